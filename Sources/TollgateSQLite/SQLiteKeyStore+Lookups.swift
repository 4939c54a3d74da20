import Dispatch
import GRDB
import Logging
import NIOCore
import Synchronization
import TollgateCore

extension SQLiteKeyStore {
    /// A request whose key the ledger does not hold, waiting for the reader.
    struct Lookup: Sendable, Waiting {
        var request: AdmissionRequest
        var promise: EventLoopPromise<AdmissionDecision>
        var enqueuedAt: NIODeadline
    }

    /// What a batch of lookups found: the digests of the keys now held, and those whose
    /// row cannot be read.
    struct LookupResult {
        var found: Set<KeyDigest>
        var damaged: Set<KeyDigest>
    }

    /// Loads a key the ledger does not hold (new, or not used since start-up), off the
    /// event loop, then decides again.
    ///
    /// Lookups are batched as commits are: one reader takes every digest that arrived while
    /// the last batch was read, so a flood of unknown secrets costs one read transaction per
    /// batch rather than one per request.
    func lookUp(_ request: AdmissionRequest, promise: EventLoopPromise<AdmissionDecision>) {
        let start = lookups.withLock { $0.append(Lookup(request: request, promise: promise, enqueuedAt: .now())) }
        if start { reader.async { [self] in readLookups() } }
    }

    /// The reader's loop: a batch at a time, until none is waiting.
    private func readLookups() {
        while let (number, batch) = takeLookups() {
            // As in `flush`: a reader busy batch after batch is not a hung one.
            health.withLock { $0.readerBeat.progressed() }
            slowDownForTesting()
            let digests = Array(Set(batch.map(\.request.digest)))
            let started = NIODeadline.now()
            let outcome = Result { try loadAndHold(digests) }
            configuration.metrics.finished(.lookup, startedAt: started, result: outcome, requests: digests.count)
            // Requests the watchdog answered `503` meanwhile are not answered again.
            let waiting = lookups.withLock { $0.finish(number) }
            if case .failure(let error) = outcome {
                logger.error("cannot look up keys", metadata: ["error": "\(Self.describe(error))", "requests": "\(batch.count)"])
            }
            answer(waiting, outcome)
        }
    }

    private func takeLookups() -> (number: Int64, batch: [Lookup])? {
        lookups.withLock { lookups in
            // Only a batch being read has a start: one left on the empty last turn made the
            // watchdog call an idle reader hung two seconds later.
            guard !lookups.pending.isEmpty else {
                lookups.stop()
                return nil
            }
            let number = lookups.startBatch(at: .now())
            return (number, lookups.inFlight)
        }
    }

    /// Reads the keys of `digests` and hands them to the ledger. A row that cannot be
    /// decoded fails its own requests (`503`), not the batch.
    private func loadAndHold(_ digests: [KeyDigest]) throws -> LookupResult {
        let (loaded, damaged) = try pool.read { db -> ([KeyRows.Loaded], [KeyDigest: String]) in
            var loaded: [KeyRows.Loaded] = []
            var damaged: [KeyDigest: String] = [:]
            for digest in digests {
                do {
                    if let key = try KeyRows.load(digest: digest, db) { loaded.append(key) }
                } catch let error as DatabaseError {
                    throw error
                } catch {
                    damaged[digest] = "\(error)"
                }
            }
            return (loaded, damaged)
        }
        for problem in damaged.values {
            logger.error("a key row cannot be read; its requests answer 503", metadata: ["problem": "\(problem)"])
        }
        for key in loaded { ledger.load(key.key, version: key.version, usageEpoch: key.usageEpoch, usage: key.usage) }
        try refresh(loaded)
        return LookupResult(found: Set(loaded.flatMap(\.key.digests)), damaged: Set(damaged.keys))
    }

    /// A change committed between the read of `loaded` and their loads may have reached the
    /// change feed while the ledger did not hold the keys, and been passed over: now that
    /// they are held, reads their records once more. A reset among those changes restarts
    /// the held counts from what the file holds now, as the change feed does, not from zero.
    private func refresh(_ loaded: [KeyRows.Loaded]) throws {
        let records = try pool.read { db in
            try loaded.compactMap { held -> (record: (key: APIKey, version: Int64, usageEpoch: Int64), usage: UsageSnapshot?)? in
                guard let record = try? KeyRows.record(digest: held.key.digest, db) else { return nil }
                // Against the epoch the ledger holds: the key may have been held already (by
                // id, under an older digest), and not taken from this read.
                let heldEpoch = ledger.usageEpoch(of: record.key.id) ?? held.usageEpoch
                let usage = record.usageEpoch > heldEpoch ? try UsageRows.usage(keyID: record.key.id, db) : nil
                return (record, usage)
            }
        }
        for (record, usage) in records {
            ledger.refresh(record.key, version: record.version, usageEpoch: record.usageEpoch, storedUsage: usage)
        }
    }

    /// Decides again the requests whose key was found; answers the others.
    private func answer(_ waiting: [Lookup], _ outcome: Result<LookupResult, any Error>) {
        var answers = PendingAnswers()
        for lookup in waiting {
            let digest = lookup.request.digest
            switch outcome {
            case .success(let result) where result.damaged.contains(digest):
                answers.add(lookup.promise, .storeUnavailable)
            case .success(let result) where result.found.contains(digest):
                admit(lookup.request, promise: lookup.promise, lookUpUnknown: false)
            case .success:
                ledger.rememberUnknown(digest, now: lookup.request.now)
                answers.add(lookup.promise, .invalidKey)
            case .failure:
                answers.add(lookup.promise, .storeUnavailable)
            }
        }
        answers.send()
    }

    /// Answers `503` to lookups that have waited longer than `bound`.
    /// - Returns: whether the reader is behind: the lookup in flight has run for longer than
    ///   `bound`, or lookups waited that long for one to start.
    func expireLookups(olderThan bound: TimeAmount, now: NIODeadline = .now()) -> Bool {
        let (expired, stalled) = lookups.withLock { $0.expire(olderThan: bound, now: now) }
        if !expired.isEmpty {
            var answers = PendingAnswers()
            for lookup in expired { answers.add(lookup.promise, .storeUnavailable) }
            answers.send()
        }
        return stalled
    }
}
