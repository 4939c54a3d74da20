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
            if var existing = try await store.key(digest: KeyDigest(secret: secret)) {
                id = existing.id
                // Earlier builds named demo keys by their secret: rename them.
                if existing.name == secret {
                    existing.name = name(quota: quota)
                    try await store.updateKey(existing)
                }
            } else {
                let draft = KeyDraft(name: name(quota: quota), scopes: [.all], limits: [LimitSpec(quota: quota, period: .total)])
                let (key, _) = try KeyIssuer.issue(draft, secret: secret, now: now)
                try await store.createKey(key)
                id = key.id
            }
            emit("  \(secret.padding(9))\(String(quota).padding(6))\(id)")
        }
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
