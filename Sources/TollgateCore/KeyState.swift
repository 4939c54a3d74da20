/// A key as the ledger holds it: the record, its counters and its per-API counts.
///
/// A class so the ledger can mutate it in place under its lock; it never leaves the lock.
public final class KeyState: CachedKey {
    public private(set) var key: APIKey
    /// The counters the key's limits draw on, one per pattern and period.
    private(set) var counterIDs: [String]
    var counters: [UsageCounter]
    var apis: [String: APIUsage]
    /// What the store holds of these counts, as far as this process knows (parallel to
    /// `counters`): a persistent store writes the difference, an increment, so that no
    /// write ever replaces a count another writer made.
    private var writtenCounters: [UsageCounter]
    private var writtenAPIs: [String: APIUsage]
    /// Bumped whenever the limits are replaced or the usage reset, so that units taken
    /// before are never given back to counters that did not take them.
    package private(set) var generation: Int64 = 0
    /// The store's version of the record held (SQLite's change `seq`), so that a late,
    /// older copy never replaces a newer one.
    package var version: Int64
    /// How many times the usage was reset (the store's count, where it keeps one): a write
    /// counted before a reset must not land after it.
    package private(set) var usageEpoch: Int64
    /// For a persistent store's journal: whether the key has counts not yet in a batch, and
    /// the last batch that carried its usage (the key may leave memory once it finished).
    package var isDirty = false
    package var lastBatch: Int64 = 0
    public var newer: KeyState?
    public var older: KeyState?
    private var plans = PathPlans<CachedPlan>()

    /// A key loaded with the usage the store holds for it.
    init(key: APIKey, version: Int64, usageEpoch: Int64, usage: UsageSnapshot?) {
        self.key = key
        self.version = version
        self.usageEpoch = usageEpoch
        self.apis = usage?.apis ?? [:]
        self.writtenAPIs = apis
        self.counterIDs = []
        self.counters = []
        self.writtenCounters = []
        self.replace(key: key, carrying: usage?.counters ?? [:], written: usage?.counters ?? [:])
    }

    /// Takes a new record (an update or revocation), keeping the counts of every counter
    /// the new limits still draw on.
    func replace(key: APIKey) {
        var current: [String: UsageCounter] = [:]
        var written: [String: UsageCounter] = [:]
        for (index, id) in counterIDs.enumerated() {
            current[id] = counters[index]
            written[id] = writtenCounters[index]
        }
        replace(key: key, carrying: current, written: written)
    }

    private func replace(key: APIKey, carrying counts: [String: UsageCounter], written: [String: UsageCounter]) {
        self.key = key
        generation += 1
        plans.removeAll()
        counterIDs = []
        for limit in key.limits where !counterIDs.contains(limit.counterID) {
            counterIDs.append(limit.counterID)
        }
        let zero = UsageCounter(windowStart: 0, used: 0)
        counters = counterIDs.map { counts[$0] ?? zero }
        writtenCounters = counterIDs.map { written[$0] ?? zero }
    }

    /// The plan for a path and, for each of its counters, the index of this key's counter.
    struct CachedPlan {
        var plan: AdmissionPlan
        var slots: [Int]
    }

    func plan(for path: String) -> CachedPlan {
        plans.plan(for: path) {
            let plan = AdmissionPlan(key: key, path: Substring(path))
            return CachedPlan(plan: plan, slots: plan.counters.map { counter in counterIDs.firstIndex(of: counter.id)! })
        }
    }

    /// Decides a request and, when it is admitted, takes one unit from every counter that
    /// applies: all or nothing, since the caller holds the ledger's lock throughout.
    func decide(_ request: AdmissionRequest) -> AdmissionDecision {
        if key.revokedAt != nil || key.refusesRetired(request.digest, at: request.now) {
            count(.keyRevoked, api: request.api)
            return AdmissionDecision(outcome: .keyRevoked, keyID: key.id)
        }
        if key.isExpired(at: request.now) {
            count(.keyExpired, api: request.api)
            return AdmissionDecision(outcome: .keyExpired, keyID: key.id)
        }
        let cached = plan(for: request.path)
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
        let decision = plan.evaluate(used: used, now: request.now, keyID: key.id)
        if decision.outcome == .admitted {
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
        if var usage = apis[request.api], usage.admitted > 0 {
            usage.admitted -= 1
            apis[request.api] = usage
        }
        let cached = plan(for: request.path)
        for (counter, slot) in zip(cached.plan.counters, cached.slots) {
            let window = counter.period.window(containing: request.now)
            if counters[slot].used(in: window) > 0 { counters[slot].used -= 1 }
        }
    }

    /// Starts every counter and per-API count again from zero, as the store does. A new
    /// generation, so that a request admitted before and answered `503` after gives nothing
    /// back to the new counts.
    func resetUsage(epoch: Int64? = nil) {
        generation += 1
        usageEpoch = epoch ?? usageEpoch + 1
        let zero = UsageCounter(windowStart: 0, used: 0)
        counters = counters.map { _ in zero }
        writtenCounters = counters
        apis = [:]
        writtenAPIs = [:]
    }

    private func count(_ outcome: AdmissionDecision.Outcome, api: String) {
        apis[api, default: APIUsage()].count(outcome)
    }

    /// What changed since the last call, as increments for the store; from then on the
    /// changes count as written. ``restore(_:)`` undoes that if the write fails.
    package func takeIncrement() -> UsageIncrement {
        var increment = UsageIncrement(keyID: key.id, usageEpoch: usageEpoch)
        for index in counters.indices where counters[index] != writtenCounters[index] {
            let now = counters[index]
            let before = writtenCounters[index]
            // A later window starts from zero, so its whole count is the increment.
            let added = now.windowStart == before.windowStart ? now.used - before.used : now.used
            increment.counters.append(.init(counter: counterIDs[index], windowStart: now.windowStart, added: added, before: before))
            writtenCounters[index] = now
        }
        for (api, usage) in apis where writtenAPIs[api] ?? APIUsage() != usage {
            let before = writtenAPIs[api] ?? APIUsage()
            increment.apis.append(.init(api: api, added: usage.subtracting(before), before: before))
            writtenAPIs[api] = usage
        }
        return increment
    }

    /// A write of `increment` failed: what it carried counts as unwritten again, so that the
    /// next increment includes it. Not after a reset: the store's counts were deleted, and
    /// the written counts are zero, as they should be.
    package func restore(_ increment: UsageIncrement) {
        guard increment.usageEpoch == usageEpoch else { return }
        for write in increment.counters {
            if let index = counterIDs.firstIndex(of: write.counter) { writtenCounters[index] = write.before }
        }
        for write in increment.apis { writtenAPIs[write.api] = write.before }
    }

    var snapshot: UsageSnapshot {
        UsageSnapshot(
            keyID: key.id,
            counters: Dictionary(uniqueKeysWithValues: zip(counterIDs, counters)),
            apis: apis
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
