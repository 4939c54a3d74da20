/// What a key's limits mean for one path: which counters a request draws on, at what
/// quota each is spent, and which limits its answer reports.
///
/// The decision is split in two pure steps so that every store runs the same one: the plan
/// (this type, from the key and the path, no clock and no counts) and ``evaluate(used:now:keyID:)``
/// (counts in, outcome and RateLimit statuses out). In-process stores read their counts from
/// memory; the Redis store runs the plan's counters in one Lua script, which reads the
/// counts, checks them against ``Counter/quota`` and takes one unit from each, all or
/// nothing, on Redis's clock, then hands the counts back to ``evaluate(used:now:keyID:)``.
public struct AdmissionPlan: Sendable, Hashable {
    /// One usage counter the request draws on. Limits with the same pattern and period
    /// share one (see ``LimitSpec/counterID``), so a request takes one unit from it.
    public struct Counter: Sendable, Hashable {
        public var id: String
        public var period: QuotaPeriod
        /// The count at which the counter is spent: the smallest quota of the limits on it.
        public var quota: Int64
    }

    /// One limit that applies to the path, in the key's order, as the answer reports it.
    public struct Limit: Sendable, Hashable {
        public var policy: String
        public var quota: Int64
        public var period: QuotaPeriod
        /// Index into ``AdmissionPlan/counters``.
        public var counter: Int
    }

    /// Whether the key's scopes reach the path; if not the request is refused with
    /// `scope_denied`, takes nothing, and reports the limits that apply to the path.
    public var inScope: Bool
    public var counters: [Counter]
    public var limits: [Limit]

    public init(key: APIKey, path: Substring) {
        inScope = key.reaches(path)
        counters = []
        limits = []
        let policies = key.policyNames
        for (index, limit) in key.limits.enumerated() where limit.scope.matches(path) {
            let id = limit.counterID
            let slot: Int
            if let existing = counters.firstIndex(where: { $0.id == id }) {
                slot = existing
                counters[slot].quota = min(counters[slot].quota, limit.quota)
            } else {
                slot = counters.count
                counters.append(Counter(id: id, period: limit.period, quota: limit.quota))
            }
            limits.append(Limit(policy: policies[index], quota: limit.quota, period: limit.period, counter: slot))
        }
    }

    /// Whether counts `used` (each counter's count in its current window, before this
    /// request) leave room for one more request on every counter.
    public func admits(used: [Int64]) -> Bool {
        inScope && zip(counters, used).allSatisfy { $0.1 < $0.0.quota }
    }

    /// The decision for counts `used` read at `now`: `admitted` (and then the counts are
    /// taken to be one higher), `quota_exceeded` or `scope_denied`, with one status per limit.
    public func evaluate(used: [Int64], now: Timestamp, keyID: KeyID) -> AdmissionDecision {
        let admitted = admits(used: used)
        var statuses: [LimitStatus] = []
        statuses.reserveCapacity(limits.count)
        var retryAfter: Int64? = 0
        var anySpent = false
        for limit in limits {
            let window = limit.period.window(containing: now)
            let count = used[limit.counter]
            let isSpent = count >= limit.quota
            let reset = window.secondsUntilReset(from: now)
            if isSpent && inScope {
                anySpent = true
                if let current = retryAfter, let reset { retryAfter = max(current, reset) } else { retryAfter = nil }
            }
            statuses.append(
                LimitStatus(
                    policy: limit.policy,
                    quota: limit.quota,
                    windowSeconds: window.length,
                    remaining: max(0, limit.quota - count - (admitted ? 1 : 0)),
                    resetSeconds: reset,
                    isSpent: isSpent
                )
            )
        }
        let outcome: AdmissionDecision.Outcome = !inScope ? .scopeDenied : admitted ? .admitted : .quotaExceeded
        return AdmissionDecision(outcome: outcome, keyID: keyID, limits: statuses, retryAfter: anySpent ? retryAfter : nil)
    }
}
