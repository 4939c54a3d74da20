/// Warnings about a key that is valid but is probably not what its operator meant: a limit
/// that can never apply, a quota of zero, a scope that reaches none of the served APIs.
///
/// Pure, so that `keys create`, `keys import` and the admin API warn alike. A warning never
/// refuses the key: an operator may prepare a key for routes not served yet.
public enum KeyAdvice {
    /// An API a gateway serves, as scopes see it: its name, and whether the paths below the
    /// name are served too (a prefix route) or the name alone (the built-in APIs, a route
    /// with `exact: true`).
    public struct ServedAPI: Sendable, Hashable {
        public var name: String
        public var servesBelow: Bool

        public init(name: String, servesBelow: Bool) {
            self.name = name
            self.servesBelow = servesBelow
        }

        /// Whether `scope` reaches a path of this API.
        func isReached(by scope: ScopePattern) -> Bool {
            scope.matches(Substring(name)) || servesBelow && scope.overlaps(.below(name))
        }

        /// Whether `limit` meters a path of this API that `scope` reaches. Scope patterns
        /// are nested or disjoint, so three that overlap pairwise share a path.
        func isMetered(by limit: LimitSpec, within scope: ScopePattern) -> Bool {
            if limit.scope.matches(Substring(name)) && scope.matches(Substring(name)) { return true }
            let below = ScopePattern.below(name)
            return servesBelow && limit.scope.overlaps(below) && scope.overlaps(below) && limit.scope.overlaps(scope)
        }
    }

    /// The warnings for a key with `scopes` and `limits` on a gateway serving `routes`
    /// (names that are served alone, e.g. `api1`), one sentence each, in the order of the
    /// key's parts.
    public static func warnings(scopes: [ScopePattern], limits: [LimitSpec], routes: [String]) -> [String] {
        warnings(scopes: scopes, limits: limits, apis: routes.map { ServedAPI(name: $0, servesBelow: false) })
    }

    /// The warnings for a key with `scopes` and `limits` on a gateway serving `apis`; with
    /// `apis` unknown (`nil`), only those that hold whatever is served: no scope, a quota
    /// of 0, a limit no path of the key's scopes can meet.
    public static func warnings(scopes: [ScopePattern], limits: [LimitSpec], apis: [ServedAPI]?) -> [String] {
        if scopes.isEmpty {
            return ["the key has no scope, so it reaches no API: give it one, e.g. '*' or 'api1'"]
        }
        let served = apis.map { $0.map { "/\($0.name)" }.joined(separator: ", ") } ?? ""
        var warnings: [String] = []
        for scope in scopes {
            guard let apis, !apis.contains(where: { $0.isReached(by: scope) }) else { continue }
            warnings.append("scope '\(scope)' reaches none of the APIs this gateway serves (\(served))\(caseHint(scope))")
        }
        let scopeList = scopes.map(\.description).joined(separator: ", ")
        for limit in limits {
            if limit.quota == 0 {
                warnings.append("limit '\(limit)' has a quota of 0, so every request it applies to is refused with 429")
            }
            if !canApply(limit, scopes: scopes) {
                warnings.append(
                    "limit '\(limit)' can never apply: its pattern '\(limit.scope)' matches no path the key's scopes (\(scopeList)) reach, so it meters nothing"
                )
            } else if let apis, !apis.contains(where: { api in scopes.contains { api.isMetered(by: limit, within: $0) } }) {
                warnings.append(
                    "limit '\(limit)' applies to none of the APIs this gateway serves (\(served)) that the key reaches, so it meters nothing\(caseHint(limit.scope))"
                )
            }
        }
        return warnings
    }

    /// Whether some path the key reaches is one `limit` meters: its pattern overlaps one of
    /// the key's scopes.
    public static func canApply(_ limit: LimitSpec, scopes: [ScopePattern]) -> Bool {
        scopes.contains { $0.overlaps(limit.scope) }
    }

    private static func caseHint(_ pattern: ScopePattern) -> String {
        pattern.description.contains(where: \.isUppercase) ? " (paths are case-sensitive)" : ""
    }
}
