import Testing
import TollgateCore

@testable import TollgateRedis

/// Reads of one key race in a Redis instance (a lookup, the change stream, an admin call):
/// the record cache keeps the newest version it has seen, whatever order the reads land in.
@Suite struct RedisCacheVersionTests {
    @Test func aReadThatStartedBeforeARevocationDoesNotUndoIt() throws {
        var cache = Cache(names: RedisKeys(namespace: "tg"), configuration: .init())
        let now = Timestamp(secondsSinceEpoch: 1_000)
        let digest = KeyDigest(secret: "secret")
        var key = APIKey(id: KeyID(rawValue: "key_racing"), digest: digest, scopes: [.all], createdAt: now)
        cache.hold(key, version: 1)
        var revoked = key
        revoked.revokedAt = now
        // The admin revocation's own read lands first, then a change-stream read made
        // before the revocation.
        cache.refresh(VersionedKey(key: revoked, version: 2))
        cache.refresh(VersionedKey(key: key, version: 1))
        cache.hold(key, version: 1)
        guard case .held(let held, _) = cache.lookup(digest, path: "api1", now: now) else {
            Issue.record("the key is no longer held")
            return
        }
        #expect(held.revokedAt == now)
        // A newer record still replaces it.
        key.name = "renamed"
        cache.refresh(VersionedKey(key: key, version: 3))
        guard case .held(let renamed, _) = cache.lookup(digest, path: "api1", now: now) else { return }
        #expect(renamed.name == "renamed" && renamed.revokedAt == nil)
    }
}
