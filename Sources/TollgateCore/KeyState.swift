/// A key as the ledger holds it: the record, its counters and its per-API counts.
///
/// A class so the ledger can mutate it in place under its lock; it never leaves the lock.
final class KeyState {
    private(set) var key: APIKey
    /// The counters the key's limits draw on, one per pattern and period.
    private(set) var counterIDs: [String]
    var counters: [UsageCounter]
    var apis: [String: APIUsage]
    var isDirty = false
    /// Bumped whenever the limits are replaced, so that units taken under old limits are
    /// never given back to counters that did not take them.
    private(set) var generation: Int64 = 0
    /// The store's version of the record held (SQLite's change `seq`), so that a late,
    /// older copy never replaces a newer one.
    var version: Int64
    /// The last group-commit batch that carried this key's usage; the key may be dropped
    /// from memory only once that batch has finished.
    var lastBatch: Int64 = 0
    /// Neighbours in the ledger's recency list (most recently used first).
    var newer: KeyState?
    var older: KeyState?

    init(key: APIKey, version: Int64, counters: [String: UsageCounter], apis: [String: APIUsage]) {
        self.key = key
        self.version = version
        self.apis = apis
        self.counterIDs = []
        self.counters = []
        self.replace(key: key, carrying: counters)
    }

    /// Takes a new record (an update or revocation), keeping the counts of every counter
    /// the new limits still draw on.
    func replace(key: APIKey) {
        var current: [String: UsageCounter] = [:]
        for (id, counter) in zip(counterIDs, counters) { current[id] = counter }
        replace(key: key, carrying: current)
    }

    private func replace(key: APIKey, carrying counts: [String: UsageCounter]) {
        self.key = key
        generation += 1
        plans.removeAll()
        counterIDs = []
        for limit in key.limits where !counterIDs.contains(limit.counterID) {
            counterIDs.append(limit.counterID)
        }
        counters = counterIDs.map { counts[$0] ?? UsageCounter(windowStart: 0, used: 0) }
    }

    /// The plan for a path and, for each of its counters, the index of this key's counter.
    struct CachedPlan {
        var plan: AdmissionPlan
        var slots: [Int]
    }

    /// Plans by path, made once per key and path rather than per request; dropped when the
    /// record changes, and bounded (paths are whatever clients send).
    private var plans: [String: CachedPlan] = [:]

    func plan(for path: String) -> CachedPlan {
        if let cached = plans[path] { return cached }
        let plan = AdmissionPlan(key: key, path: Substring(path))
        let slots = plan.counters.map { counter in counterIDs.firstIndex(of: counter.id)! }
        let cached = CachedPlan(plan: plan, slots: slots)
        if plans.count >= 64 { plans.removeAll(keepingCapacity: true) }
        plans[path] = cached
        return cached
    }

    /// Decides a request and, when it is admitted, takes one unit from every counter that
    /// applies: all or nothing, since the caller holds the ledger's lock throughout.
    func decide(_ request: AdmissionRequest) -> AdmissionDecision {
        if key.revokedAt != nil {
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
    func giveBack(_ request: AdmissionRequest, generation: Int64) {
        if var usage = apis[request.api], usage.admitted > 0 {
            usage.admitted -= 1
            apis[request.api] = usage
        }
        guard generation == self.generation else { return }
        let cached = plan(for: request.path)
        for (counter, slot) in zip(cached.plan.counters, cached.slots) {
            let window = counter.period.window(containing: request.now)
            if counters[slot].used(in: window) > 0 { counters[slot].used -= 1 }
        }
    }

    /// Starts every counter and per-API count again from zero. A new generation, so that a
    /// request admitted before and answered `503` after gives nothing back to the new counts.
    func resetUsage() {
        generation += 1
        counters = counters.map { _ in UsageCounter(windowStart: 0, used: 0) }
        apis = [:]
    }

    private func count(_ outcome: AdmissionDecision.Outcome, api: String) {
        apis[api, default: APIUsage()].count(outcome)
        isDirty = true
    }

    var snapshot: UsageSnapshot {
        UsageSnapshot(
            keyID: key.id,
            counters: Dictionary(uniqueKeysWithValues: zip(counterIDs, counters)),
            apis: apis
        )
    }
}

/// A key's usage at one instant, as a store writes it: absolute values, so that writing
/// the same snapshot twice is harmless.
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
