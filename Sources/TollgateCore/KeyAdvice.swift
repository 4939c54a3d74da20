/// Warnings about a key that is valid but is probably not what its operator meant: a limit
/// that can never apply, a quota of zero, a scope that reaches none of the served APIs.
///
/// Pure, so that `keys create`, `keys import` and the admin API warn alike. A warning never
/// refuses the key: an operator may prepare a key for routes not served yet.
public enum KeyAdvice {
    /// The warnings for a key with `scopes` and `limits` on a gateway serving `routes`
    /// (normalized paths, e.g. `api1`), one sentence each, in the order of the key's parts.
    public static func warnings(scopes: [ScopePattern], limits: [LimitSpec], routes: [String]) -> [String] {
        if scopes.isEmpty {
            return ["the key has no scope, so it reaches no API: give it one, e.g. '*' or 'api1'"]
        }
        let served = routes.map { "/\($0)" }.joined(separator: ", ")
        var warnings: [String] = []
        for scope in scopes where !routes.contains(where: { scope.matches(Substring($0)) }) {
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
            } else if !canApply(limit, scopes: scopes, routes: routes) {
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

    /// Whether `limit` meters one of `routes` that the key's `scopes` reach.
    public static func canApply(_ limit: LimitSpec, scopes: [ScopePattern], routes: [String]) -> Bool {
        routes.contains { route in limit.scope.matches(Substring(route)) && scopes.contains { $0.matches(Substring(route)) } }
    }

    private static func caseHint(_ pattern: ScopePattern) -> String {
        pattern.description.contains(where: \.isUppercase) ? " (paths are case-sensitive)" : ""
    }
}
