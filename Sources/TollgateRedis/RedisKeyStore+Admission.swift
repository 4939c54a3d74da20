import Logging
import NIOCore
import Synchronization
import TollgateCore
import TollgateRESP

extension RedisKeyStore {
    // MARK: Data plane

    public func admit(_ request: AdmissionRequest, promise: EventLoopPromise<AdmissionDecision>) {
        let found = cache.withLock { cache -> Cache.Lookup in cache.lookup(request.digest, path: request.path, now: request.now) }
        switch found {
        case .unknown:
            promise.succeed(.invalidKey)
        case .miss:
            lookUp(request, promise: promise)
        case .held(let key, let plan):
            decide(request, key: key, plan: plan, promise: promise)
        }
    }

    /// How many times one request reads its key's record again because the admission
    /// script found another version in Redis (edited elsewhere, or a snapshot restored)
    /// before it answers `503`.
    static let rereads = 2

    func decide(
        _ request: AdmissionRequest, key: APIKey, plan: RedisPlan, rereads: Int = 0, promise: EventLoopPromise<AdmissionDecision>
    ) {
        if let outcome = key.refusal(presenting: request.digest, at: request.now) {
            // Counted without waiting: the answer does not depend on it.
            _ = client.send(RESPCommand("HINCRBY", .string(plan.apiUsage), .string("\(outcome.rawValue):\(request.api)"), 1))
            promise.succeed(AdmissionDecision(outcome: outcome, keyID: key.id))
            return
        }
        var args = [RESPArgument.string(request.api), .string(plan.plan.inScope ? "take" : "peek")]
        args += plan.arguments
        let started = NIODeadline.now()
        let api = request.api
        let script = client.evalScript(RedisScripts.admit, keys: plan.keyArguments, args: args) { late, connection in
            self.lateAdmission(late, api: api, plan: plan, on: connection)
        }
        script.whenComplete { result in
            self.configuration.metrics.finished(.admit, startedAt: started, result: result)
            switch result {
            case .success(let reply):
                let values = reply.array ?? []
                switch values.count >= 3 ? values[1].int : nil {
                case .some(-1):
                    self.recordVanished(key.id)
                    promise.succeed(.invalidKey)
                    return
                case .some(-2):
                    guard rereads < Self.rereads else {
                        self.logger.error("the key's record kept changing while it was admitted", metadata: ["key": "\(key.id)"])
                        promise.succeed(.storeUnavailable)
                        return
                    }
                    self.reread(request, id: key.id, rereads: rereads + 1, promise: promise)
                    return
                default:
                    break
                }
                guard values.count == plan.plan.counters.count + 3, let nowMillis = values[0].int else {
                    self.logger.error("the admission script answered something unexpected", metadata: ["reply": "\(reply)"])
                    promise.succeed(.storeUnavailable)
                    return
                }
                let used = values.dropFirst(3).map { Int64($0.int ?? 0) }
                let decidedAt = Timestamp(millisecondsSinceEpoch: Int64(nowMillis))
                var decision = plan.plan.evaluate(used: used, now: decidedAt, keyID: key.id)
                if decision.outcome == .admitted {
                    decision.receipt = AdmissionDecision.Receipt(decidedAt: decidedAt, generation: Int64(values[2].int ?? 0))
                }
                // The script and the plan must agree; if they ever did not, refuse.
                if (decision.outcome == .admitted) != (values[1].int == 1) {
                    self.logger.error("the admission script and the plan disagree", metadata: ["key": "\(key.id)"])
                    promise.succeed(.storeUnavailable)
                    return
                }
                promise.succeed(decision)
            case .failure(let error):
                self.logger.debug("admission failed", metadata: ["key": "\(key.id)", "error": "\(error)"])
                promise.succeed(.storeUnavailable)
            }
        }
    }

    /// The reply of an admission whose request was already answered `503` (Redis ran the
    /// script after the command timeout): if it took a unit, the unit is given back, on the
    /// connection the reply came on, which has just shown that it answers.
    private func lateAdmission(_ reply: RESPValue, api: String, plan: RedisPlan, on connection: RESPConnection) {
        guard let values = reply.array, values.count == plan.plan.counters.count + 3, values[1].int == 1,
            let nowMillis = values[0].int
        else { return }
        let receipt = AdmissionDecision.Receipt(
            decidedAt: Timestamp(millisecondsSinceEpoch: Int64(nowMillis)), generation: Int64(values[2].int ?? 0))
        connection.evalScript(
            RedisScripts.giveBack, keys: plan.keyArguments, args: giveBackArguments(api: api, plan: plan, receipt: receipt)
        )
        .whenComplete { result in
            switch result {
            case .success(let given):
                self.logger.debug("a late admission was given back", metadata: ["given": "\(given.int ?? 0)"])
            case .failure(let error):
                self.logger.warning(
                    "a late admission could not be given back; its unit stays taken", metadata: ["error": "\(error)"])
            }
        }
    }

    /// The give-back script's ARGV: the api, the usage epoch the admission read, and the
    /// start of each counter's window at the admission's own `TIME`.
    private func giveBackArguments(api: String, plan: RedisPlan, receipt: AdmissionDecision.Receipt) -> [RESPArgument] {
        var args: [RESPArgument] = [.string(api), .string(String(receipt.generation))]
        args.reserveCapacity(2 + plan.plan.counters.count)
        for counter in plan.plan.counters {
            args.append(.string(String(counter.period.window(containing: receipt.decidedAt).start)))
        }
        return args
    }

    /// The admission script found no record for a key held here. Tollgate never deletes a
    /// record, so Redis lost what it held (a restart without persistence, a flush): every
    /// record held is dropped, and the change stream is read from its new end.
    private func recordVanished(_ id: KeyID) {
        logger.warning("a key held here is gone from Redis; every key record is read afresh", metadata: ["key": "\(id)"])
        cache.withLock { $0.removeAll() }
        storeLost.store(true, ordering: .relaxed)
    }

    /// One script call, not awaited: it decrements the counters of the windows the
    /// admission's own `TIME` fell in (the receipt), if the usage epoch is unchanged. A key
    /// this instance no longer holds, or a Redis that does not answer, gives nothing.
    public func giveBack(_ request: AdmissionRequest, decision: AdmissionDecision, promise: EventLoopPromise<Bool>?) {
        guard decision.outcome == .admitted, let receipt = decision.receipt,
            case .held(let key, let plan) = cache.withLock({ $0.lookup(request.digest, path: request.path, now: request.now) }),
            key.id == decision.keyID
        else {
            promise?.succeed(false)
            return
        }
        let args = giveBackArguments(api: request.api, plan: plan, receipt: receipt)
        client.evalScript(RedisScripts.giveBack, keys: plan.keyArguments, args: args).whenComplete { result in
            switch result {
            case .success(let reply):
                promise?.succeed(reply.int == 1)
            case .failure(let error):
                self.logger.debug("give-back failed; the request stays counted", metadata: ["key": "\(key.id)", "error": "\(error)"])
                promise?.succeed(false)
            }
        }
    }

    /// Loads a key this instance does not hold, then decides.
    private func lookUp(_ request: AdmissionRequest, promise: EventLoopPromise<AdmissionDecision>) {
        let started = NIODeadline.now()
        client.send(RESPCommand("GET", .string(names.digest(request.digest)))).flatMap { reply -> EventLoopFuture<RESPValue?> in
            guard let id = reply.string else { return promise.futureResult.eventLoop.makeSucceededFuture(nil) }
            return self.client.send(RESPCommand("HGETALL", .string(self.names.record(KeyID(rawValue: id))))).map { $0 }
        }.whenComplete { result in
            self.configuration.metrics.finished(.lookup, startedAt: started, result: result)
            switch result {
            case .success(nil):
                self.cache.withLock { $0.rememberUnknown(request.digest, now: request.now) }
                promise.succeed(.invalidKey)
            case .success(let reply?) where RedisRecord.pairs(reply).isEmpty:
                // An index entry whose record Redis no longer holds: no key.
                self.cache.withLock { $0.rememberUnknown(request.digest, now: request.now) }
                promise.succeed(.invalidKey)
            case .success(let reply?):
                self.holdAndDecide(request, reply: reply, rereads: 0, promise: promise)
            case .failure(let error):
                self.logger.debug("key lookup failed", metadata: ["error": "\(error)"])
                promise.succeed(.storeUnavailable)
            }
        }
    }

    /// Reads a held record again after the admission script found another version in
    /// Redis, holds what Redis has (even if older: a restored snapshot), then decides again.
    private func reread(_ request: AdmissionRequest, id: KeyID, rereads: Int, promise: EventLoopPromise<AdmissionDecision>) {
        client.send(RESPCommand("HGETALL", .string(names.record(id)))).whenComplete { result in
            switch result {
            case .success(let reply) where RedisRecord.pairs(reply).isEmpty:
                self.recordVanished(id)
                promise.succeed(.invalidKey)
            case .success(let reply):
                self.holdAndDecide(request, reply: reply, rereads: rereads, promise: promise)
            case .failure(let error):
                self.logger.debug("key reread failed", metadata: ["error": "\(error)"])
                promise.succeed(.storeUnavailable)
            }
        }
    }

    /// Holds a record read from Redis and decides on what the cache then holds: a newer
    /// record held meanwhile (a revocation made here) wins over this read, unless the read
    /// follows the script's report that Redis holds another version.
    private func holdAndDecide(_ request: AdmissionRequest, reply: RESPValue, rereads: Int, promise: EventLoopPromise<AdmissionDecision>) {
        do {
            let read = try RedisRecord.decode(reply)
            let held = cache.withLock { cache -> (APIKey, RedisPlan)? in
                cache.hold(read, version: RedisRecord.version(reply), evenIfOlder: rereads > 0)
                guard case .held(let key, let plan) = cache.lookup(request.digest, path: request.path, now: request.now) else {
                    return nil
                }
                return (key, plan)
            }
            guard let (key, plan) = held else {
                promise.succeed(.invalidKey)
                return
            }
            decide(request, key: key, plan: plan, rereads: rereads, promise: promise)
        } catch {
            logger.error("a key record in Redis cannot be read; its requests answer 503", metadata: ["error": "\(error)"])
            promise.succeed(.storeUnavailable)
        }
    }
}
