/// A key as the ledger holds it: the record, its counters and its per-API counts.
///
/// A class so the ledger can mutate it in place under its lock; it never leaves the lock.
final class KeyState {
    private(set) var key: APIKey
    private(set) var policyNames: [String]
    /// For each limit, the index of the counter it draws on.
    private(set) var counterOfLimit: [Int]
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
        self.policyNames = []
        self.counterOfLimit = []
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
        policyNames = key.policyNames
        counterIDs = []
        counterOfLimit = []
        for limit in key.limits {
            let id = limit.counterID
            if let index = counterIDs.firstIndex(of: id) {
                counterOfLimit.append(index)
            } else {
                counterOfLimit.append(counterIDs.count)
                counterIDs.append(id)
            }
        }
        counters = counterIDs.map { counts[$0] ?? UsageCounter(windowStart: 0, used: 0) }
    }

    /// Decides a request and, when it is admitted, takes one unit from every counter that
    /// applies: all or nothing, since the caller holds the ledger's lock throughout.
    func decide(_ request: AdmissionRequest) -> AdmissionDecision {
        let path = Substring(request.path)
        let outcome: AdmissionDecision.Outcome
        if key.revokedAt != nil {
            outcome = .keyRevoked
        } else if key.isExpired(at: request.now) {
            outcome = .keyExpired
        } else if !key.reaches(path) {
            outcome = .scopeDenied
        } else {
            outcome = .admitted
        }
        guard outcome == .admitted || outcome == .scopeDenied else {
            count(outcome, api: request.api)
            return AdmissionDecision(outcome: outcome, keyID: key.id)
        }

        var statuses: [LimitStatus] = []
        statuses.reserveCapacity(key.limits.count)
        var spentResets: Int64? = 0
        var anySpent = false
        for (index, limit) in key.limits.enumerated() where limit.scope.matches(path) {
            let window = limit.period.window(containing: request.now)
            let used = counters[counterOfLimit[index]].used(in: window)
            let isSpent = used >= limit.quota
            let reset = window.secondsUntilReset(from: request.now)
            if isSpent && outcome == .admitted {
                anySpent = true
                if let current = spentResets, let reset { spentResets = max(current, reset) } else { spentResets = nil }
            }
            statuses.append(
                LimitStatus(
                    policy: policyNames[index],
                    quota: limit.quota,
                    windowSeconds: window.length,
                    remaining: max(0, limit.quota - used),
                    resetSeconds: reset,
                    isSpent: isSpent
                )
            )
        }
        if outcome == .scopeDenied || anySpent {
            let final: AdmissionDecision.Outcome = anySpent ? .quotaExceeded : .scopeDenied
            count(final, api: request.api)
            return AdmissionDecision(outcome: final, keyID: key.id, limits: statuses, retryAfter: anySpent ? spentResets : nil)
        }

        // Every applicable limit has room: take one unit from each counter once, even when
        // two limits share it. A shared counter is taken at its first limit, so every limit
        // reads its remaining count after the take.
        var taken: UInt64 = 0
        var statusIndex = 0
        for (index, limit) in key.limits.enumerated() where limit.scope.matches(path) {
            let slot = counterOfLimit[index]
            if taken & (1 << UInt64(slot)) == 0 {
                taken |= 1 << UInt64(slot)
                let window = limit.period.window(containing: request.now)
                let used = counters[slot].used(in: window)
                // Never move a window backwards: after a clock step back, the later window
                // keeps counting rather than starting afresh.
                counters[slot] = UsageCounter(windowStart: max(counters[slot].windowStart, window.start), used: used + 1)
            }
            statuses[statusIndex].remaining = max(0, limit.quota - counters[slot].used)
            statusIndex += 1
        }
        count(.admitted, api: request.api)
        return AdmissionDecision(outcome: .admitted, keyID: key.id, limits: statuses)
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
        let path = Substring(request.path)
        var given: UInt64 = 0
        for (index, limit) in key.limits.enumerated() where limit.scope.matches(path) {
            let slot = counterOfLimit[index]
            guard given & (1 << UInt64(slot)) == 0 else { continue }
            given |= 1 << UInt64(slot)
            let window = limit.period.window(containing: request.now)
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
