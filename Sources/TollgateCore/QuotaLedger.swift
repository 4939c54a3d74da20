import NIOCore
import Synchronization

/// The in-memory authority on keys and usage for stores that live in one process
/// (memory and SQLite): decides each request under one short lock, with no I/O and no wait.
///
/// A persistent store hands admitted requests' promises to the ledger, which keeps them
/// until a batch containing their usage is committed (group commit); the store's writer
/// takes batches with ``takeBatch()`` and completes them.
public final class QuotaLedger: Sendable {
    public struct Configuration: Sendable {
        /// Whether an admitted request must wait for its usage to be committed.
        public var isPersistent: Bool
        /// How long an unknown secret is refused without asking the store again.
        public var unknownKeyMilliseconds: Int64
        /// How many unknown secrets are remembered before the list starts over.
        public var unknownKeyCapacity: Int
        /// How many keys stay in memory; beyond it the least recently used key whose usage
        /// is committed is dropped, and loaded again from the store on its next request.
        /// `nil` keeps every key: a store whose ledger is its only copy.
        public var keyCapacity: Int?

        public init(
            isPersistent: Bool,
            unknownKeyMilliseconds: Int64 = 1000,
            unknownKeyCapacity: Int = 100_000,
            keyCapacity: Int? = nil
        ) {
            self.isPersistent = isPersistent
            self.unknownKeyMilliseconds = unknownKeyMilliseconds
            self.unknownKeyCapacity = unknownKeyCapacity
            self.keyCapacity = keyCapacity
        }
    }

    /// What ``admit(_:promise:)`` did with a request.
    public enum Admission: Sendable {
        /// Decided; the caller completes the promise. Refusals are counted in memory and
        /// persisted with the next commit or periodic flush.
        case decided(AdmissionDecision)
        /// Admitted; the promise completes when the usage is committed. `flush` asks the
        /// caller to start the writer, because no flush is under way.
        case awaitingCommit(flush: Bool)
        /// The ledger does not hold this digest: the store must look it up.
        case unknownKey
    }

    struct Waiter: Sendable {
        var promise: EventLoopPromise<AdmissionDecision>
        var decision: AdmissionDecision
        /// What was decided, so that the units can be given back if the request is not served.
        var request: AdmissionRequest
        /// The key's limit generation when the units were taken (see ``KeyState/generation``).
        var generation: Int64
        var enqueuedAt: NIODeadline
    }

    struct State {
        var byDigest: [KeyDigest: KeyState] = [:]
        var byID: [KeyID: KeyState] = [:]
        var unknown: [KeyDigest: Int64] = [:]
        var dirty: [KeyState] = []
        /// Admitted requests waiting for the next batch.
        var waiters: [Waiter] = []
        /// Admitted requests of the batch being committed, and when that commit started.
        var committing: [Waiter] = []
        var committingNumber: Int64 = 0
        var committingSince: NIODeadline?
        var isFlushing = false
        /// Batches handed to the writer, and the last one it finished.
        var batchesTaken: Int64 = 0
        var batchesFinished: Int64 = 0
        /// The recency list, for dropping idle keys when a capacity is set.
        var newest: KeyState?
        var oldest: KeyState?

        mutating func link(_ key: KeyState) {
            key.older = newest
            key.newer = nil
            newest?.newer = key
            newest = key
            if oldest == nil { oldest = key }
        }

        mutating func unlink(_ key: KeyState) {
            if let newer = key.newer { newer.older = key.older } else { newest = key.older }
            if let older = key.older { older.newer = key.newer } else { oldest = key.newer }
            key.newer = nil
            key.older = nil
        }

        mutating func touch(_ key: KeyState) {
            guard newest !== key else { return }
            unlink(key)
            link(key)
        }

        /// Drops least recently used keys beyond `capacity` whose usage is all committed;
        /// a key still waiting on a commit goes back to the front. A few steps per call,
        /// so that the lock is never held for long, and never `spared`, the key just loaded
        /// for a request that is about to be decided.
        mutating func evict(beyond capacity: Int, sparing spared: KeyState) {
            var steps = 8
            while byDigest.count > capacity, steps > 0, let victim = oldest, victim !== spared {
                steps -= 1
                if !victim.isDirty && victim.lastBatch <= batchesFinished {
                    unlink(victim)
                    byDigest[victim.key.digest] = nil
                    byID[victim.key.id] = nil
                } else {
                    touch(victim)
                }
            }
        }
    }

    let configuration: Configuration
    private let state = Mutex(State())

    public init(configuration: Configuration) {
        self.configuration = configuration
    }

    // MARK: Data plane

    /// Decides `request` if the key is held, counting it in memory.
    public func admit(_ request: AdmissionRequest, promise: EventLoopPromise<AdmissionDecision>) -> Admission {
        let persistent = configuration.isPersistent
        let tracksRecency = configuration.keyCapacity != nil
        return state.withLock { state -> Admission in
            guard let key = state.byDigest[request.digest] else {
                if let until = state.unknown[request.digest] {
                    if until > request.now.millisecondsSinceEpoch { return .decided(.invalidKey) }
                    state.unknown[request.digest] = nil
                }
                return .unknownKey
            }
            if tracksRecency { state.touch(key) }
            let wasDirty = key.isDirty
            let decision = key.decide(request)
            if !wasDirty && key.isDirty { state.dirty.append(key) }
            // A refusal's count may wait for the next commit or the store's periodic flush:
            // a flood of refused requests then costs no writes of its own.
            guard persistent, decision.outcome == .admitted else { return .decided(decision) }
            let flush = !state.isFlushing
            state.isFlushing = true
            state.waiters.append(
                Waiter(promise: promise, decision: decision, request: request, generation: key.generation, enqueuedAt: .now())
            )
            return .awaitingCommit(flush: flush)
        }
    }

    /// Remembers that no key has this digest, so that repeated tries cost no store lookup.
    public func rememberUnknown(_ digest: KeyDigest, now: Timestamp) {
        let until = now.millisecondsSinceEpoch + configuration.unknownKeyMilliseconds
        let capacity = configuration.unknownKeyCapacity
        state.withLock { state in
            guard state.byDigest[digest] == nil else { return }
            if state.unknown.count >= capacity { state.unknown.removeAll(keepingCapacity: true) }
            state.unknown[digest] = until
        }
    }

    // MARK: Keys

    /// Holds a key loaded from the store at `version`, unless the ledger holds its digest or
    /// id already (then the held key's in-memory counts are the newer ones and are kept).
    /// - Returns: whether the key was taken; the check and the insert are one step, so two
    ///   racing creates of one secret cannot both succeed.
    @discardableResult
    public func load(_ key: APIKey, version: Int64, counters: [String: UsageCounter], apis: [String: APIUsage]) -> Bool {
        state.withLock { state in
            state.unknown[key.digest] = nil
            guard state.byDigest[key.digest] == nil, state.byID[key.id] == nil else { return false }
            let keyState = KeyState(key: key, version: version, counters: counters, apis: apis)
            state.byDigest[key.digest] = keyState
            state.byID[key.id] = keyState
            if let capacity = configuration.keyCapacity {
                state.link(keyState)
                state.evict(beyond: capacity, sparing: keyState)
            }
            return true
        }
    }

    /// How many keys the ledger holds in memory.
    public var heldKeyCount: Int {
        state.withLock { state in state.byDigest.count }
    }

    /// Takes a changed record (revoked, updated) if the key is held under that id and the
    /// record is newer than the one held; `version` `nil` always applies (a store with one
    /// copy of each key).
    /// - Returns: whether the ledger holds the key.
    @discardableResult
    public func refresh(_ key: APIKey, version: Int64?) -> Bool {
        state.withLock { state in
            state.unknown[key.digest] = nil
            guard let keyState = state.byDigest[key.digest], keyState.key.id == key.id else { return false }
            if let version {
                guard version > keyState.version else { return true }
                keyState.version = version
            }
            keyState.replace(key: key)
            return true
        }
    }

    /// Revokes a held key in one step under the lock (for stores whose ledger is their only
    /// copy); a key revoked already keeps its first revocation time.
    public func revoke(id: KeyID, at now: Timestamp) -> APIKey? {
        state.withLock { state in
            guard let keyState = state.byID[id] else { return nil }
            if keyState.key.revokedAt == nil {
                var key = keyState.key
                key.revokedAt = now
                keyState.replace(key: key)
            }
            return keyState.key
        }
    }

    /// Starts a held key's usage again from zero; a persistent ledger's next batch carries
    /// the zeros.
    /// - Returns: whether the ledger holds the key.
    @discardableResult
    public func resetUsage(id: KeyID) -> Bool {
        let persistent = configuration.isPersistent
        return state.withLock { state in
            guard let keyState = state.byID[id] else { return false }
            keyState.resetUsage()
            if persistent { state.markDirty(keyState) }
            return true
        }
    }

    /// Forgets that a digest was unknown: a key with it was just created.
    public func forgetUnknown(_ digest: KeyDigest) {
        state.withLock { state in state.unknown[digest] = nil }
    }

    /// The held record and usage of a key, for stores whose ledger is their only copy.
    public func snapshot(of id: KeyID) -> (key: APIKey, usage: UsageSnapshot)? {
        state.withLock { state in
            guard let keyState = state.byID[id] else { return nil }
            return (keyState.key, keyState.snapshot)
        }
    }

    public func snapshot(ofDigest digest: KeyDigest) -> APIKey? {
        state.withLock { state in state.byDigest[digest]?.key }
    }

    /// Every held key, sorted by id.
    public var keys: [APIKey] {
        state.withLock { state in state.byID.values.map(\.key) }.sorted { $0.id < $1.id }
    }

    // MARK: Group commit

    /// Usage to persist; the requests that wait on it stay with the ledger, so that a commit
    /// that fails or takes too long can answer them `503` and give their units back.
    public struct Batch: Sendable {
        public var snapshots: [UsageSnapshot]
        fileprivate var number: Int64
        /// How many admitted requests wait on this batch.
        public var waiterCount: Int
    }

    /// Takes everything counted since the last batch; `nil`, and the writer stops, when
    /// there is nothing. The writer calls this in a loop until `nil`, so that requests
    /// arriving during a commit share the next one.
    public func takeBatch() -> Batch? {
        state.withLock { state -> Batch? in
            guard !state.dirty.isEmpty || !state.waiters.isEmpty else {
                state.isFlushing = false
                return nil
            }
            state.isFlushing = true
            state.batchesTaken += 1
            let number = state.batchesTaken
            let snapshots = state.dirty.map { key -> UsageSnapshot in
                key.isDirty = false
                key.lastBatch = number
                return key.snapshot
            }
            state.dirty.removeAll(keepingCapacity: true)
            // Swap rather than copy, so that neither array is reallocated per batch.
            swap(&state.committing, &state.waiters)
            state.waiters.removeAll(keepingCapacity: true)
            state.committingNumber = number
            state.committingSince = .now()
            return Batch(snapshots: snapshots, number: number, waiterCount: state.committing.count)
        }
    }

    /// The writer stopped early (after a failure): the next admitted request starts it again.
    public func flushStopped() {
        state.withLock { $0.isFlushing = false }
    }

    /// The writer committed `batch`: its requests are answered with their decisions.
    public func committed(_ batch: Batch) {
        let waiters = state.withLock { state -> [Waiter] in
            state.batchesFinished = max(state.batchesFinished, batch.number)
            return state.takeCommitting(batch.number)
        }
        var answers = PendingAnswers()
        for waiter in waiters { answers.add(waiter.promise, waiter.decision) }
        answers.send()
    }

    /// The writer could not commit `batch`: its requests are answered `503` and take
    /// nothing, like any refusal, and its keys are written again with the next batch.
    public func failed(_ batch: Batch) {
        let waiters = state.withLock { state -> [Waiter] in
            state.batchesFinished = max(state.batchesFinished, batch.number)
            let waiters = state.takeCommitting(batch.number)
            for waiter in waiters { state.giveBack(waiter) }
            for snapshot in batch.snapshots {
                if let key = state.byID[snapshot.keyID] { state.markDirty(key) }
            }
            return waiters
        }
        Self.answerUnavailable(waiters)
    }

    /// Answers `503`, giving their units back, every admitted request that has waited
    /// longer than `bound` for its commit: the one in flight if it started before
    /// `now - bound`, and those queued behind it since then.
    ///
    /// The commit may still land later; the counts it writes then include units that were
    /// given back, so every key it carried is written again by the next commit (absolute
    /// values), and until then the file can only count too much, never too little.
    /// - Returns: whether the writer is behind: a commit has been running for longer than
    ///   `bound`, or requests waited that long for one to start.
    @discardableResult
    public func expireWaiters(olderThan bound: TimeAmount, now: NIODeadline = .now()) -> Bool {
        let (waiters, stalled) = state.withLock { state -> ([Waiter], Bool) in
            var expired: [Waiter] = []
            var stalled = false
            if let since = state.committingSince, since + bound <= now {
                stalled = true
                expired = state.takeCommitting(state.committingNumber)
            }
            let late = state.waiters.removePrefix { $0.enqueuedAt + bound <= now }
            expired += late
            for waiter in expired { state.giveBack(waiter) }
            return (expired, stalled || !late.isEmpty)
        }
        Self.answerUnavailable(waiters)
        return stalled
    }

    private static func answerUnavailable(_ waiters: [Waiter]) {
        guard !waiters.isEmpty else { return }
        var answers = PendingAnswers()
        for waiter in waiters { answers.add(waiter.promise, .storeUnavailable) }
        answers.send()
    }
}

extension QuotaLedger.State {
    /// The waiters of batch `number` if it is the one in flight and not yet answered.
    mutating func takeCommitting(_ number: Int64) -> [QuotaLedger.Waiter] {
        guard committingNumber == number else { return [] }
        committingSince = nil
        let waiters = committing
        committing = []
        return waiters
    }

    mutating func markDirty(_ key: KeyState) {
        if !key.isDirty {
            key.isDirty = true
            dirty.append(key)
        }
    }

    /// Gives back the units an admitted request took, for a request that is answered `503`.
    mutating func giveBack(_ waiter: QuotaLedger.Waiter) {
        guard let key = byDigest[waiter.request.digest] else { return }
        key.giveBack(waiter.request, generation: waiter.generation)
        markDirty(key)
    }
}

extension Array {
    /// Removes and returns the leading elements that satisfy `predicate`: the requests
    /// of a FIFO that have waited too long.
    public mutating func removePrefix(while predicate: (Element) -> Bool) -> ArraySlice<Element> {
        let count = prefix(while: predicate).count
        guard count > 0 else { return [] }
        let removed = self[..<count]
        removeFirst(count)
        return removed
    }
}
