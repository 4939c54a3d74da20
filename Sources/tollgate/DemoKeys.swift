import TollgateCore

/// The old service's `--test` keys, kept for a first run that just works.
enum DemoKeys {
    static let quotas: [Int64] = [5, 10, 100, 1000]

    /// Creates each demo key whose secret the store does not know yet, and lists them.
    static func ensure(in store: some KeyStore) async throws(TollgateError) {
        let now = SystemWallClock().now
        emit("Demo keys (scope *, quota per total):")
        for quota in quotas {
            let secret = "demo\(quota)"
            var id: KeyID
            if let existing = try await store.key(digest: KeyDigest(secret: secret)) {
                id = existing.id
            } else {
                let draft = KeyDraft(name: secret, scopes: [.all], limits: [LimitSpec(quota: quota, period: .total)])
                let (key, _) = try KeyIssuer.issue(draft, secret: secret, now: now)
                try await store.createKey(key)
                id = key.id
            }
            emit("  \(secret.padding(9))\(String(quota).padding(6))\(id)")
        }
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
