/// What keys with the same scopes and limits share: their counter ids and their plans by
/// path. Keys issued in bulk mostly have a handful of shapes, so a million held keys hold a
/// handful of these rather than a million copies of the same arrays and plans.
///
/// Mutated (its plan cache) only under the lock of the ledger that holds it.
public final class KeyPolicy {
    let scopes: [ScopePattern]
    let limits: [LimitSpec]
    /// The counters the limits draw on, one per pattern and period.
    let counterIDs: [String]
    private var plans = PathPlans<CachedPlan>()

    /// The plan for a path and, for each of its counters, the index of the key's counter.
    struct CachedPlan {
        var plan: AdmissionPlan
        var slots: [Int]
    }

    init(scopes: [ScopePattern], limits: [LimitSpec]) {
        self.scopes = scopes
        self.limits = limits
        var ids: [String] = []
        for limit in limits where !ids.contains(limit.counterID) { ids.append(limit.counterID) }
        counterIDs = ids
    }

    func plan(for path: String, key: APIKey) -> CachedPlan {
        plans.plan(for: path) {
            // The plan reads only the scopes and limits, which every key of this policy shares.
            let plan = AdmissionPlan(key: key, path: Substring(path))
            return CachedPlan(plan: plan, slots: plan.counters.map { counter in counterIDs.firstIndex(of: counter.id)! })
        }
    }
}

/// The policies a ledger holds, by shape; bounded (it starts over when full: keys keep the
/// policy they hold, and new keys make new ones).
@usableFromInline
struct PolicyTable {
    private struct Shape: Hashable {
        var scopes: [ScopePattern]
        var limits: [LimitSpec]
    }

    private var byShape: [Shape: KeyPolicy] = [:]

    init() {}
    private let capacity = 10_000

    /// The shared policy for `key`'s scopes and limits; `key` is given that policy's
    /// arrays, so that it shares their storage too.
    mutating func policy(for key: inout APIKey) -> KeyPolicy {
        let shape = Shape(scopes: key.scopes, limits: key.limits)
        let policy: KeyPolicy
        if let held = byShape[shape] {
            policy = held
        } else {
            if byShape.count >= capacity { byShape.removeAll(keepingCapacity: true) }
            policy = KeyPolicy(scopes: key.scopes, limits: key.limits)
            byShape[shape] = policy
        }
        key.scopes = policy.scopes
        key.limits = policy.limits
        return policy
    }
}
