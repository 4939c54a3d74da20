import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import Synchronization
import TollgateCore
import TollgateRESP

/// The shared store: keys and usage in Redis, so that several Tollgate instances share
/// keys and quotas exactly.
///
/// Every admission is one Lua script call ([`RedisScripts.admit`]) that checks and takes
/// all of a request's quotas atomically on Redis's clock; nothing is counted in this
/// process, so any number of instances may serve the same keys. Key records are cached
/// here by digest and follow a change stream in Redis (polled every 200 ms), so creates,
/// edits and revocations made elsewhere arrive within a second, and at once here.
///
/// Fail-closed: when Redis cannot be reached or answers late (the command timeout, 100 ms
/// by default), a request is answered `503`: serving it would be serving uncounted.
public final class RedisKeyStore: KeyStore {
    public struct Configuration: Sendable {
        public var redis: RESPConfiguration
        /// How often this instance reads the change stream for keys changed elsewhere.
        public var changePollInterval: Duration = .milliseconds(200)
        /// How long a secret no key has is refused without asking Redis again.
        public var unknownKeyMilliseconds: Int64 = 1000
        /// How many key records this instance caches; beyond it the least recently used are
        /// dropped and read again from Redis when next used.
        public var cachedKeys = 1_000_000
        /// The prefix of every Redis key Tollgate writes, so that deployments can share a Redis.
        public var namespace = "tg"
        /// Admission script calls and key lookups: counts, errors, latency (none by default).
        public var metrics = StoreMetrics.disabled

        public init(redis: RESPConfiguration) {
            self.redis = redis
        }
    }

    public let configuration: Configuration
    let client: RESPClient
    let cache: Mutex<Cache>
    let names: RedisKeys
    private let ready = Atomic<Bool>(false)
    private let logger: Logger

    public init(
        configuration: Configuration,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger = Logger(label: "tollgate.redis")
    ) throws(TollgateError) {
        self.configuration = configuration
        self.logger = logger
        names = RedisKeys(namespace: configuration.namespace)
        cache = Mutex(
            Cache(
                names: names,
                configuration: .init(capacity: configuration.cachedKeys, unknownKeyMilliseconds: configuration.unknownKeyMilliseconds)
            ))
        do {
            client = try RESPClient(configuration: configuration.redis, eventLoopGroup: eventLoopGroup, logger: logger)
        } catch {
            throw TollgateError(.invalidStoreURL, "the Redis store's settings are not valid: \(error.message)")
        }
    }

    /// Connects, failing with a clear error when Redis cannot be reached: for the CLI,
    /// which runs one command and must say why it cannot.
    public func connect() async throws(TollgateError) {
        do {
            try await client.connect()
            ready.store(true, ordering: .relaxed)
        } catch {
            throw TollgateError(
                .storeUnavailable,
                "cannot reach Redis at \(configuration.redis.host):\(configuration.redis.port) (\(error.message)): check that it runs and the URL and password are right"
            )
        }
    }

    /// Closes the connections (the CLI calls it when done; `run()` does it on shutdown).
    public func close() async {
        await client.close()
    }

    // MARK: Service

    /// Keeps the connections, follows the change stream and checks Redis every 250 ms
    /// for `/readyz`, until graceful shutdown.
    public func run() async throws {
        client.start()
        var lastChange = await latestChangeID() ?? "0-0"
        var lastPing = ContinuousClock.now - .seconds(1)
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            do {
                try await Task.sleep(for: configuration.changePollInterval)
            } catch {
                break
            }
            if ContinuousClock.now - lastPing >= .milliseconds(250) {
                lastPing = ContinuousClock.now
                await checkReady()
            }
            if let next = await followChanges(after: lastChange) { lastChange = next }
        }
        await client.close()
    }

    private func checkReady() async {
        let isReady: Bool
        do {
            isReady = try await client.execute(RESPCommand("PING")).string == "PONG"
        } catch {
            isReady = false
        }
        let wasReady = ready.exchange(isReady, ordering: .relaxed)
        if wasReady && !isReady {
            logger.error("Redis does not answer; answering 503 until it does")
        } else if !wasReady && isReady {
            logger.notice("Redis answers")
            // Changes made while this instance could not see them may be lost with the
            // stream (a Redis restart without persistence): read every record afresh.
            cache.withLock { $0.removeAll() }
        }
    }

    private func latestChangeID() async -> String? {
        let reply = try? await client.execute(RESPCommand("XREVRANGE", .string(names.changes), "+", "-", "COUNT", 1))
        return reply?.array?.first?.array?.first?.string
    }

    /// Reads the changes after `after` and refreshes the records this instance holds.
    ///
    /// The stream is capped (about 100,000 entries): if entries this instance had not read
    /// were trimmed away (it lagged behind a bulk import, say), a revocation among them would
    /// be missed, so the whole cache is dropped and every record read afresh on next use.
    /// While it lags (a full page), only the records it holds are read again.
    /// - Returns: the last change read.
    private func followChanges(after: String) async -> String? {
        if after != "0-0",
            let first = try? await client.execute(RESPCommand("XRANGE", .string(names.changes), "-", "+", "COUNT", 1)).array?
                .first?.array?.first?.string,
            Self.streamID(first, isAfter: after)
        {
            logger.warning("the change stream was trimmed past the last change read; reading every key record afresh")
            cache.withLock { $0.removeAll() }
        }
        guard
            let entries = try? await client.execute(
                RESPCommand("XRANGE", .string(names.changes), .string("(" + after), "+", "COUNT", 1000)
            ).array
        else { return nil }
        let lagging = entries.count == 1000
        var last: String?
        for entry in entries {
            guard let parts = entry.array, parts.count == 2, let entryID = parts[0].string else { continue }
            last = entryID
            let fields = parts[1].array ?? []
            guard fields.count >= 2, let keyID = fields[1].string else { continue }
            let id = KeyID(rawValue: keyID)
            if lagging && !cache.withLock({ $0.holds(id) }) { continue }
            await refresh(id)
        }
        return last
    }

    /// Whether stream id `a` (`ms-seq`) comes after `b`. When the stream's first entry comes
    /// after the last one read, that one was trimmed, and perhaps unread ones with it (at
    /// worst a needless reload of the cache, never a missed change).
    static func streamID(_ a: String, isAfter b: String) -> Bool {
        func parts(_ id: String) -> (UInt64, UInt64)? {
            let pieces = id.split(separator: "-")
            guard pieces.count == 2, let ms = UInt64(pieces[0]), let seq = UInt64(pieces[1]) else { return nil }
            return (ms, seq)
        }
        guard let x = parts(a), let y = parts(b) else { return false }
        return x > y
    }

    /// Reads a record again and takes it if this instance holds the key, and forgets the
    /// digest as unknown (a new key must work at once).
    private func refresh(_ id: KeyID) async {
        guard let key = try? await versionedKey(id: id) else { return }
        cache.withLock { cache in cache.refresh(key) }
    }

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

    private func decide(_ request: AdmissionRequest, key: APIKey, plan: RedisPlan, promise: EventLoopPromise<AdmissionDecision>) {
        if let outcome = key.refusal(presenting: request.digest, at: request.now) {
            // Counted without waiting: the answer does not depend on it.
            _ = client.send(RESPCommand("HINCRBY", .string(plan.keys[0]), .string("\(outcome.rawValue):\(request.api)"), 1))
            promise.succeed(AdmissionDecision(outcome: outcome, keyID: key.id))
            return
        }
        var args = [RESPArgument.string(request.api), .string(plan.plan.inScope ? "take" : "peek")]
        args += plan.arguments
        let started = NIODeadline.now()
        client.evalScript(RedisScripts.admit, keys: plan.keyArguments, args: args).whenComplete { result in
            self.configuration.metrics.finished(.admit, startedAt: started, result: result)
            switch result {
            case .success(let reply):
                guard let values = reply.array, values.count == plan.plan.counters.count + 3, let nowMillis = values[0].int else {
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
        var args: [RESPArgument] = [.string(request.api), .string(String(receipt.generation))]
        args.reserveCapacity(2 + plan.plan.counters.count)
        for counter in plan.plan.counters {
            args.append(.string(String(counter.period.window(containing: receipt.decidedAt).start)))
        }
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
            case .success(let reply?):
                do {
                    let read = try RedisRecord.decode(reply)
                    // Decided on what the cache then holds: a newer record held meanwhile
                    // (a revocation made here) wins over this read.
                    let held = self.cache.withLock { cache -> (APIKey, RedisPlan)? in
                        cache.hold(read, version: RedisRecord.version(reply))
                        guard case .held(let key, let plan) = cache.lookup(request.digest, path: request.path, now: request.now) else {
                            return nil
                        }
                        return (key, plan)
                    }
                    guard let (key, plan) = held else {
                        promise.succeed(.invalidKey)
                        return
                    }
                    self.decide(request, key: key, plan: plan, promise: promise)
                } catch {
                    self.logger.error("a key record in Redis cannot be read; its requests answer 503", metadata: ["error": "\(error)"])
                    promise.succeed(.storeUnavailable)
                }
            case .failure(let error):
                self.logger.debug("key lookup failed", metadata: ["error": "\(error)"])
                promise.succeed(.storeUnavailable)
            }
        }
    }

    public func isReady() async -> Bool {
        ready.load(ordering: .relaxed)
    }

    // MARK: Control plane

    public func createKey(_ key: APIKey) async throws(TollgateError) {
        let created = try await run(
            RedisScripts.create,
            keys: [names.digest(key.digest), names.record(key.id), names.ids, names.changes],
            args: [key.id.rawValue] + RedisRecord.fields(key)
        )
        guard created.int == 1 else {
            throw TollgateError(.keyExists, "a key with that secret or id exists already: leave out --key to generate a new secret")
        }
        cache.withLock { $0.forgetUnknown(key.digest) }
    }

    public func key(id: KeyID) async throws(TollgateError) -> APIKey? {
        try await record(id: id)
    }

    /// The version is the record's `version` field, which every script that changes the
    /// record moves on.
    public func versionedKey(id: KeyID) async throws(TollgateError) -> VersionedKey? {
        let reply = try await execute(RESPCommand("HGETALL", .string(names.record(id))))
        if RedisRecord.pairs(reply).isEmpty { return nil }
        return VersionedKey(key: try RedisRecord.decode(reply), version: RedisRecord.version(reply))
    }

    public func key(digest: KeyDigest) async throws(TollgateError) -> APIKey? {
        guard let id = try await execute(RESPCommand("GET", .string(names.digest(digest)))).string else { return nil }
        return try await record(id: KeyID(rawValue: id))
    }

    public func listKeys(after: KeyID?, limit: Int) async throws(TollgateError) -> [APIKey] {
        let start = after.map { "(" + $0.rawValue } ?? "-"
        let ids =
            try await execute(
                RESPCommand("ZRANGE", .string(names.ids), .string(start), "+", "BYLEX", "LIMIT", 0, .integer(limit))
            ).array ?? []
        var keys: [APIKey] = []
        for id in ids.compactMap(\.string) {
            if let key = try await record(id: KeyID(rawValue: id)) { keys.append(key) }
        }
        return keys
    }

    public func updateKey(_ key: APIKey, keepingRevocation: Bool) async throws(TollgateError) {
        let fields = RedisRecord.fields(key)
        let updated = try await run(
            RedisScripts.update,
            keys: [names.record(key.id), names.changes, names.apiUsage(key.id)],
            args: [key.id.rawValue, fields[1], fields[2], fields[3], fields[5], fields[6], keepingRevocation ? "1" : "0"]
        )
        guard updated.int == 1 else { throw TollgateError(.keyNotFound, "no key has id \(key.id)") }
        if let stored = try await versionedKey(id: key.id) { cache.withLock { $0.refresh(stored) } }
    }

    /// One script sets the fields given and returns the record as it then is, so that the
    /// cache takes exactly what was stored; other instances follow the change stream.
    public func editKey(id: KeyID, _ edit: KeyEdit, ifVersion: Int64?) async throws(TollgateError) -> VersionedKey? {
        var pairs: [String] = []
        if let name = edit.name { pairs += ["name", name] }
        if let scopes = edit.scopes { pairs += ["scopes", scopes.storedText] }
        if let limits = edit.limits { pairs += ["limits", limits.storedText] }
        if let expiry = edit.expiry { pairs += ["expires_at", expiry.instant.map { String($0.millisecondsSinceEpoch) } ?? ""] }
        let reply = try await run(
            RedisScripts.edit,
            keys: [names.record(id), names.changes, names.apiUsage(id)],
            args: [id.rawValue, ifVersion.map(String.init) ?? ""] + pairs
        )
        if reply.int == -1 { throw TollgateError.versionMismatch(id) }
        guard reply.int != 0, !RedisRecord.pairs(reply).isEmpty else { return nil }
        let key = VersionedKey(key: try RedisRecord.decode(reply), version: RedisRecord.version(reply))
        cache.withLock { $0.refresh(key) }
        return key
    }

    /// The Lua script moves the digests in one step; it names the index of the digest it
    /// drops in KEYS (read here first), and a rotation racing in between is retried.
    public func rotateKey(id: KeyID, to newDigest: KeyDigest, previousUntil: Timestamp) async throws(TollgateError) -> APIKey? {
        for _ in 0..<3 {
            guard let current = try await record(id: id) else { return nil }
            let dropped = current.previousDigest
            let result = try await run(
                RedisScripts.rotate,
                keys: [names.record(id), names.digest(newDigest), dropped.map(names.digest) ?? names.record(id), names.changes],
                args: [id.rawValue, newDigest.hex, String(previousUntil.millisecondsSinceEpoch), dropped?.hex ?? ""]
            )
            switch result.int {
            case 1:
                guard let key = try await versionedKey(id: id) else { return nil }
                cache.withLock { $0.refresh(key) }
                return key.key
            case 0: return nil
            case -1: throw TollgateError(.keyExists, "a key with that secret exists already")
            default: continue
            }
        }
        throw TollgateError(.storeUnavailable, "the key \(id) kept changing while it was rotated: try again")
    }

    public func revokeKey(id: KeyID, at now: Timestamp, ifVersion: Int64?) async throws(TollgateError) -> APIKey? {
        let revoked = try await run(
            RedisScripts.revoke,
            keys: [names.record(id), names.changes],
            args: [id.rawValue, String(now.millisecondsSinceEpoch), ifVersion.map(String.init) ?? ""]
        )
        if revoked.int == -1 { throw TollgateError.versionMismatch(id) }
        guard revoked.int == 1, let key = try await versionedKey(id: id) else { return nil }
        cache.withLock { $0.refresh(key) }
        return key.key
    }

    /// Deletes the key's counters and per-API counts and moves its usage epoch on, in one
    /// script (they share a slot).
    public func resetUsage(id: KeyID) async throws(TollgateError) {
        guard let key = try await record(id: id) else { throw TollgateError(.keyNotFound, "no key has id \(id)") }
        let counters = Set(key.limits.map(\.counterID)).map { names.counter(id, $0) }
        _ = try await run(RedisScripts.resetUsage, keys: [names.apiUsage(id)] + counters, args: [])
    }

    public func usage(id: KeyID) async throws(TollgateError) -> UsageSnapshot? {
        guard let key = try await record(id: id) else { return nil }
        var counters: [String: UsageCounter] = [:]
        for counterID in Set(key.limits.map(\.counterID)) {
            let values = try await execute(RESPCommand("HMGET", .string(names.counter(id, counterID)), "w", "n")).array ?? []
            if values.count == 2, let start = values[0].string.flatMap({ Int64($0) }), let used = values[1].string.flatMap({ Int64($0) }) {
                counters[counterID] = UsageCounter(windowStart: start, used: used)
            }
        }
        var apis: [String: APIUsage] = [:]
        let reply = try await execute(RESPCommand("HGETALL", .string(names.apiUsage(id))))
        for (field, value) in RedisRecord.pairs(reply) {
            guard let colon = field.firstIndex(of: ":"), let count = Int64(value) else { continue }
            let api = String(field[field.index(after: colon)...])
            switch field[..<colon] {
            case "admitted": apis[api, default: APIUsage()].admitted = count
            case "scope_denied": apis[api, default: APIUsage()].scopeDenied = count
            case "quota_exceeded": apis[api, default: APIUsage()].quotaExceeded = count
            case "key_revoked": apis[api, default: APIUsage()].keyRevoked = count
            case "key_expired": apis[api, default: APIUsage()].keyExpired = count
            default: continue
            }
        }
        return UsageSnapshot(keyID: id, counters: counters, apis: apis)
    }

    // MARK: Helpers

    private func record(id: KeyID) async throws(TollgateError) -> APIKey? {
        try await versionedKey(id: id)?.key
    }

    private func execute(_ command: RESPCommand) async throws(TollgateError) -> RESPValue {
        let reply: RESPValue
        do {
            reply = try await client.execute(command)
        } catch {
            throw TollgateError(.storeUnavailable, "Redis failed '\(command.name)': \(error.message)")
        }
        if let message = reply.errorMessage {
            throw TollgateError(.storeUnavailable, "Redis refused '\(command.name)': \(message)")
        }
        return reply
    }

    private func run(_ script: RESPScript, keys: [String], args: [String]) async throws(TollgateError) -> RESPValue {
        do {
            return try await client.executeScript(script, keys: keys.map { .string($0) }, args: args.map { .string($0) })
        } catch {
            throw TollgateError(.storeUnavailable, "Redis failed a script: \(error.message)")
        }
    }
}
