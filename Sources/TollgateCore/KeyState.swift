import Synchronization

/// A key as the ledger holds it: the record, its counters and its per-API counts.
///
/// A class so the ledger can mutate it in place under its lock; it never leaves the lock.
/// Kept small, since a server may hold a million: what keys of one shape share lives in
/// their ``KeyPolicy``, and counts are small arrays rather than dictionaries.
public final class KeyState: CachedKey {
    public private(set) var key: APIKey
    private(set) var policy: KeyPolicy
    /// One per ``KeyPolicy/counterIDs``.
    private var counters: SmallArray<UsageCounter>
    /// Per API: admitted and refused counts.
    private var apis: SmallArray<APICount>
    /// What the store holds of the counts, as far as this process knows, while it differs
    /// from them: a persistent store writes the difference, an increment, so that no write
    /// ever replaces a count another writer made. `nil` when the store holds the counts
    /// (so most of a million held keys keep no second copy); made by ``holdWritten()``
    /// before the counts change.
    private var written: Written?
    /// Moved on whenever the limits are replaced or the usage reset, so that units taken
    /// before are never given back to counters that did not take them. Drawn from one
    /// process-wide sequence, so that a key dropped from memory and loaded again never
    /// repeats a generation an earlier copy handed out in an ``AdmissionDecision/Receipt``.
    package private(set) var generation = KeyState.nextGeneration()
    /// The store's version of the record held (SQLite's change `seq`), so that a late,
    /// older copy never replaces a newer one.
    package var version: Int64
    /// How many times the usage was reset (the store's count, where it keeps one): a write
    /// counted before a reset must not land after it.
    package private(set) var usageEpoch: Int64
    /// For a persistent store's journal: whether the key has counts not yet in a batch, and
    /// otherwise the last batch that carried its usage (the key may leave memory once it
    /// finished). One word for both (a batch number is never negative), as a million held
    /// keys make every word of this object count; ``untracked`` for a key of a store with
    /// no journal, which keeps no written copy of its counts (nothing ever takes it).
    private var journalMark: Int64
    private static let untracked = Int64.min
    package var isDirty: Bool { journalMark < 0 && journalMark != Self.untracked }
    /// Meaningful only while the key is not dirty.
    package var lastBatch: Int64 { max(journalMark, 0) }

    package func markDirty() {
        precondition(journalMark != Self.untracked, "a key of a store with no journal")
        journalMark = -1
    }

    /// Taken into batch `number`: no longer dirty.
    package func markTaken(inBatch number: Int64) {
        precondition(number >= 0 && journalMark != Self.untracked)
        journalMark = number
    }
    public var newer: KeyState?
    public var older: KeyState?

    struct APICount: SmallArrayElement {
        var api: String
        var usage: APIUsage

        static var vacant: APICount { APICount(api: "", usage: .vacant) }
        var isVacant: Bool { usage.isVacant }
    }

    /// The written counts, one per counter and per API, in the same order.
    private final class Written {
        var counters: SmallArray<UsageCounter>
        var apis: SmallArray<APIUsage>

        init(counters: SmallArray<UsageCounter>, apis: SmallArray<APIUsage>) {
            self.counters = counters
            self.apis = apis
        }
    }

    /// A key loaded with the usage the store holds for it (which is what counts as written).
    /// `keepsWrittenCounts` is `false` for a store whose memory is its only copy.
    init(key: APIKey, policy: KeyPolicy, version: Int64, usageEpoch: Int64, usage: UsageSnapshot?, keepsWrittenCounts: Bool = true) {
        journalMark = keepsWrittenCounts ? 0 : Self.untracked
        self.key = key
        self.policy = policy
        self.version = version
        self.usageEpoch = usageEpoch
        let zero = UsageCounter(windowStart: 0, used: 0)
        counters = SmallArray(policy.counterIDs.lazy.map { usage?.counters[$0] ?? zero })
        apis = SmallArray((usage?.apis ?? [:]).lazy.map { APICount(api: $0.key, usage: $0.value) })
    }

    /// Keeps what the store holds before the counts change (it is what they are now, unless
    /// they changed since the last write). Called before every change to the counts.
    /// `nil` for a key that keeps no written counts.
    @discardableResult
    private func holdWritten() -> Written? {
        if let written { return written }
        guard journalMark != Self.untracked else { return nil }
        let held = Written(counters: counters, apis: SmallArray(apis.lazy.map(\.usage)))
        written = held
        return held
    }

    private func writtenCounter(_ index: Int) -> UsageCounter { written?.counters[index] ?? counters[index] }

    private func writtenAPI(_ index: Int) -> APIUsage { written?.apis[index] ?? apis[index].usage }

    /// The record with its generation as its version, for stores whose ledger is their only
    /// copy (an `ETag`).
    var versioned: VersionedKey { VersionedKey(key: key, version: generation) }

    private static let generations = Atomic<Int64>(0)

    private static func nextGeneration() -> Int64 {
        generations.wrappingAdd(1, ordering: .relaxed).newValue
    }

    /// Takes a new record (an update or revocation) with its policy, keeping the counts of
    /// every counter the new limits still draw on.
    func replace(key: APIKey, policy: KeyPolicy) {
        self.key = key
        generation = Self.nextGeneration()
        guard policy !== self.policy else { return }
        let zero = UsageCounter(windowStart: 0, used: 0)
        let old = Dictionary(uniqueKeysWithValues: self.policy.counterIDs.enumerated().map { ($1, $0) })
        if let written {
            written.counters = SmallArray(policy.counterIDs.lazy.map { old[$0].map { written.counters[$0] } ?? zero })
        }
        counters = SmallArray(policy.counterIDs.lazy.map { old[$0].map { self.counters[$0] } ?? zero })
        self.policy = policy
    }

    /// Decides a request and, when it is admitted, takes one unit from every counter that
    /// applies: all or nothing, since the caller holds the ledger's lock throughout.
    func decide(_ request: AdmissionRequest) -> AdmissionDecision {
        if let refusal = key.refusal(presenting: request.digest, at: request.now) {
            count(refusal, api: request.api)
            return AdmissionDecision(outcome: refusal, keyID: key.id)
        }
        let cached = policy.plan(for: request.path, key: key)
        let plan = cached.plan
        var used: [Int64] = []
        var windowStarts: [Int64] = []
        used.reserveCapacity(plan.counters.count)
        windowStarts.reserveCapacity(plan.counters.count)
        for (counter, slot) in zip(plan.counters, cached.slots) {
            let window = counter.period.window(containing: request.now)
            used.append(counters[slot].used(in: window))
            windowStarts.append(window.start)
        }
        var decision = plan.evaluate(used: used, now: request.now, keyID: key.id)
        if decision.outcome == .admitted {
            decision.receipt = AdmissionDecision.Receipt(decidedAt: request.now, generation: generation)
            holdWritten()
            for (index, slot) in cached.slots.enumerated() {
                // Never move a window backwards: after a clock step back, the later window
                // keeps counting rather than starting afresh.
                counters[slot] = UsageCounter(windowStart: max(counters[slot].windowStart, windowStarts[index]), used: used[index] + 1)
            }
        }
        count(decision.outcome, api: request.api)
        return decision
    }

    /// Undoes an admission whose request was not served (its commit failed or took too
    /// long): the per-API count, and one unit from each counter it took, unless that
    /// counter has since moved to a later window (then the unit is gone already).
    package func giveBack(_ request: AdmissionRequest, generation: Int64) {
        guard generation == self.generation else { return }
        holdWritten()
        if let index = apis.firstIndex(where: { $0.api == request.api }), apis[index].usage.admitted > 0 {
            apis[index].usage.admitted -= 1
        }
        let cached = policy.plan(for: request.path, key: key)
        for (counter, slot) in zip(cached.plan.counters, cached.slots) {
            let window = counter.period.window(containing: request.now)
            if counters[slot].used(in: window) > 0 { counters[slot].used -= 1 }
        }
    }

    /// Gives back the units of an admitted request that was not served after all (see
    /// ``KeyStore/giveBack(_:decision:)``): nothing unless the key's generation is the
    /// receipt's; then the per-API admitted count, and one unit from each counter that is
    /// still in the window the receipt's instant falls in, never below zero.
    ///
    /// Stricter than ``giveBack(_:generation:)``: a counter in a later window, even one the
    /// unit went to after a clock step back, gets nothing, since it cannot be told from a
    /// counter that moved on.
    /// - Returns: whether anything changed.
    package func giveBack(_ request: AdmissionRequest, receipt: AdmissionDecision.Receipt) -> Bool {
        guard receipt.generation == generation else { return false }
        var changed = false
        if let index = apis.firstIndex(where: { $0.api == request.api }), apis[index].usage.admitted > 0 {
            holdWritten()
            apis[index].usage.admitted -= 1
            changed = true
        }
        let cached = policy.plan(for: request.path, key: key)
        for (counter, slot) in zip(cached.plan.counters, cached.slots) {
            let window = counter.period.window(containing: receipt.decidedAt)
            if counters[slot].windowStart == window.start, counters[slot].used > 0 {
                holdWritten()
                counters[slot].used -= 1
                changed = true
            }
        }
        return changed
    }

    /// The counters a give-back for `request` would return a unit to, with the window it was
    /// taken in, as a persistent store writes them; `nil` when the receipt is of an earlier
    /// generation (a reset or an edit since), which gets nothing back.
    package func giveBackTargets(
        _ request: AdmissionRequest, receipt: AdmissionDecision.Receipt
    ) -> [(counter: String, windowStart: Int64)]? {
        guard receipt.generation == generation else { return nil }
        let cached = policy.plan(for: request.path, key: key)
        return zip(cached.plan.counters, cached.slots).map { counter, slot in
            (policy.counterIDs[slot], counter.period.window(containing: receipt.decidedAt).start)
        }
    }

    /// A give-back the file has taken: one unit off the counter's held and written counts
    /// where they are in the unit's window, so that what remains to be written is unchanged.
    /// Found by id: an edit since may have changed the key's counters (and their slots).
    package func applyWrittenGiveBack(counter: String, windowStart: Int64) {
        guard let slot = policy.counterIDs.firstIndex(of: counter) else { return }
        // Without a written copy the two are equal and stay so.
        if let written, written.counters[slot].windowStart == windowStart, written.counters[slot].used > 0 {
            written.counters[slot].used -= 1
        }
        if counters[slot].windowStart == windowStart, counters[slot].used > 0 { counters[slot].used -= 1 }
    }

    /// As ``applyWrittenGiveBack(counter:windowStart:)``, for the API's admitted count.
    package func applyWrittenGiveBack(api: String) {
        guard let index = apis.firstIndex(where: { $0.api == api }) else { return }
        if let written, written.apis[index].admitted > 0 { written.apis[index].admitted -= 1 }
        if apis[index].usage.admitted > 0 { apis[index].usage.admitted -= 1 }
    }

    /// Starts every counter and per-API count again from zero, as the store does. A new
    /// generation, so that a request admitted before and answered `503` after gives nothing
    /// back to the new counts.
    ///
    /// `stored` is what the store holds after a reset made elsewhere (and writes since): the
    /// counts then start from it plus what this process counted and has not written yet (it
    /// will be written, as an increment, exactly as the store applies it).
    func resetUsage(epoch: Int64? = nil, stored: UsageSnapshot? = nil) {
        generation = Self.nextGeneration()
        usageEpoch = epoch ?? usageEpoch + 1
        let zero = UsageCounter(windowStart: 0, used: 0)
        guard let stored else {
            counters = SmallArray(counters.lazy.map { _ in zero })
            apis.removeAll()
            written = nil
            return
        }
        var heldCounters = SmallArray<UsageCounter>()
        for (index, id) in policy.counterIDs.enumerated() {
            let now = counters[index]
            let before = writtenCounter(index)
            let held = stored.counters[id] ?? zero
            var current = held
            if now != before {
                let added = now.windowStart == before.windowStart ? now.used - before.used : now.used
                if now.windowStart > held.windowStart {
                    current = UsageCounter(windowStart: now.windowStart, used: max(0, added))
                } else if now.windowStart == held.windowStart {
                    // Units given back and not yet written may exceed what the reset left.
                    current.used = max(0, current.used + added)
                }
            }
            counters[index] = current
            heldCounters.append(held)
        }
        var merged = SmallArray(stored.apis.lazy.map { APICount(api: $0.key, usage: $0.value) })
        var heldAPIs = SmallArray(stored.apis.lazy.map(\.value))
        for (index, count) in apis.enumerated() where count.usage != writtenAPI(index) {
            let added = count.usage.subtracting(writtenAPI(index))
            if let index = merged.firstIndex(where: { $0.api == count.api }) {
                merged[index].usage = merged[index].usage.adding(added)
                merged[index].usage.admitted = max(0, merged[index].usage.admitted)
            } else {
                var current = added
                current.admitted = max(0, current.admitted)
                merged.append(APICount(api: count.api, usage: current))
                heldAPIs.append(APIUsage())
            }
        }
        apis = merged
        written = journalMark == Self.untracked ? nil : Written(counters: heldCounters, apis: heldAPIs)
    }

    private func count(_ outcome: AdmissionDecision.Outcome, api: String) {
        // A key reaches a few APIs: a scan of a small array beats hashing into a dictionary.
        let written = holdWritten()
        if let index = apis.firstIndex(where: { $0.api == api }) {
            apis[index].usage.count(outcome)
        } else {
            var usage = APIUsage()
            usage.count(outcome)
            apis.append(APICount(api: api, usage: usage))
            written?.apis.append(APIUsage())
        }
    }

    /// What changed since the last call, as increments for the store; from then on the
    /// changes count as written. ``restore(_:)`` undoes that if the write fails.
    package func takeIncrement() -> UsageIncrement {
        var increment = UsageIncrement(keyID: key.id, usageEpoch: usageEpoch)
        guard let written else { return increment }
        for index in counters.indices where counters[index] != written.counters[index] {
            let now = counters[index]
            let before = written.counters[index]
            // A later window starts from zero, so its whole count is the increment.
            let added = now.windowStart == before.windowStart ? now.used - before.used : now.used
            increment.counters.append(
                .init(counter: policy.counterIDs[index], windowStart: now.windowStart, added: added, before: before))
        }
        for index in apis.indices where apis[index].usage != written.apis[index] {
            let before = written.apis[index]
            increment.apis.append(.init(api: apis[index].api, added: apis[index].usage.subtracting(before), before: before))
        }
        self.written = nil
        return increment
    }

    /// A write of `increment` failed: what it carried counts as unwritten again, so that the
    /// next increment includes it. Not after a reset: the store's counts were deleted, and
    /// the written counts are zero, as they should be.
    package func restore(_ increment: UsageIncrement) {
        guard increment.usageEpoch == usageEpoch, !increment.isEmpty, let written = holdWritten() else { return }
        for write in increment.counters {
            if let index = policy.counterIDs.firstIndex(of: write.counter) { written.counters[index] = write.before }
        }
        for write in increment.apis {
            if let index = apis.firstIndex(where: { $0.api == write.api }) { written.apis[index] = write.before }
        }
    }

    var snapshot: UsageSnapshot {
        UsageSnapshot(
            keyID: key.id,
            counters: Dictionary(uniqueKeysWithValues: zip(policy.counterIDs, counters)),
            apis: Dictionary(apis.map { ($0.api, $0.usage) }, uniquingKeysWith: { a, _ in a })
        )
    }
}

/// A key's usage at one instant: counters and per-API counts.
public struct UsageSnapshot: Sendable, Hashable {
    public var keyID: KeyID
    /// Counter id (``LimitSpec/counterID``) to its current window and count.
    public var counters: [String: UsageCounter]
    public var apis: [String: APIUsage]

    public init(keyID: KeyID, counters: [String: UsageCounter], apis: [String: APIUsage]) {
        self.keyID = keyID
        self.counters = counters
        self.apis = apis
    }
}

/// What one key counted since its last write, as a persistent store adds it: increments,
/// never absolute values, so that a write never replaces counts another writer made.
public struct UsageIncrement: Sendable, Hashable {
    public struct Counter: Sendable, Hashable {
        public var counter: String
        /// The window the count belongs to. A store holding an earlier window starts this one
        /// at `added`; one holding this window adds `added` (which may be negative: units
        /// given back); one holding a later window ignores it.
        public var windowStart: Int64
        public var added: Int64
        /// What the store held before, as far as this process knew.
        var before: UsageCounter
    }

    public struct API: Sendable, Hashable {
        public var api: String
        public var added: APIUsage
        var before: APIUsage
    }

    public var keyID: KeyID
    /// The key's usage epoch when counted: a store that reset the key since drops the write.
    public var usageEpoch: Int64
    public var counters: [Counter] = []
    public var apis: [API] = []

    public var isEmpty: Bool { counters.isEmpty && apis.isEmpty }
}
