import TollgateCore

/// The old service's `--test` keys, kept for a first run that just works: every start
/// gives them back their full quota, as `--test` gave fresh keys on every start.
enum DemoKeys {
    static let quotas: [Int64] = [5, 10, 100, 1000]

    /// Creates each demo key the store does not know yet, restores the others to what a
    /// demo key is (scope `*`, `N/total`, not revoked, no expiry) with their usage reset,
    /// and returns the lines that list them with what each has left, read back from the
    /// store, for `serve` to print once it is listening.
    static func restore(in store: some KeyStore) async throws(TollgateError) -> [String] {
        let now = SystemWallClock().now
        var lines: [String] = []
        var restored = 0
        for quota in quotas {
            let secret = "demo\(quota)"
            let limits = [LimitSpec(quota: quota, period: .total)]
            let key: APIKey
            if var existing = try await store.key(digest: KeyDigest(secret: secret)) {
                let demo = (name: name(quota: quota), scopes: [ScopePattern.all], limits: limits)
                if existing.name != demo.name || existing.scopes != demo.scopes || existing.limits != demo.limits
                    || existing.expiresAt != nil || existing.revokedAt != nil
                {
                    existing.name = demo.name
                    existing.scopes = demo.scopes
                    existing.limits = demo.limits
                    existing.expiresAt = nil
                    existing.revokedAt = nil
                    try await store.updateKey(existing, keepingRevocation: false)
                }
                try await store.resetUsage(id: existing.id)
                key = existing
                restored += 1
            } else {
                let draft = KeyDraft(name: name(quota: quota), scopes: [.all], limits: limits)
                (key, _) = try KeyIssuer.issue(draft, secret: secret, now: now)
                try await store.createKey(key)
            }
            let usage = try await store.usage(id: key.id)
            let report = UsageReport(key: key, usage: usage, now: now)
            let left = report.limits.first?.remaining ?? quota
            lines.append("  \(secret.padding(9))\(String(left).padding(5))of \(String(quota).padding(6))\(key.id)")
        }
        let title =
            restored == 0
            ? "Demo keys created (scope *, each with a quota in total that never resets; each start with --demo restores it):"
            : "Demo keys restored to their full quota (scope *, each with a quota in total; usage from earlier runs is reset):"
        return [title, "  KEY      LEFT OF QUOTA ID"] + lines
    }

    /// A demo key's name: never its secret, which the store must not hold in any form.
    static func name(quota: Int64) -> String {
        "demo key (\(quota) total)"
    }

    static func printTryLine(host: String, port: Int) {
        emit("Try: curl -i -H 'token: demo5' http://\(urlHost(host)):\(port)/api1")
    }
}

extension String {
    func padding(_ width: Int) -> String {
        count >= width ? self + " " : self + String(repeating: " ", count: width - count)
    }
}
