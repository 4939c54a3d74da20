import Foundation
import Testing
import TollgateCore
import TollgateRedis
import TollgateSQLite
import TollgateTestSupport

/// Rotation on every store: a new secret for the same key and usage; the previous secret
/// works for the overlap, then is refused as revoked; a later rotation forgets it.
@Suite struct RotationTests {
    @Test(arguments: StoreKind.allCases)
    func theOldSecretWorksForTheOverlapThenIsRevoked(kind: StoreKind) async throws {
        let store = try await kind.make()
        let start = SystemWallClock().now
        let key = try await makeKey(in: store, limits: ["10/total"], secret: "old-secret", now: start).key
        #expect(try await admit(store, secret: "old-secret", now: start).outcome == .admitted)

        let until = start.adding(seconds: 60)
        let rotated = try #require(try await store.rotateKey(id: key.id, to: KeyDigest(secret: "new-secret"), previousUntil: until))
        #expect(rotated.id == key.id && rotated.limits == key.limits && rotated.scopes == key.scopes)
        #expect(rotated.digest == KeyDigest(secret: "new-secret"))
        #expect(rotated.previousDigest == KeyDigest(secret: "old-secret"))
        #expect(rotated.previousDigestExpiresAt == until)
        #expect(try await store.key(id: key.id) == rotated)
        #expect(try await store.key(digest: KeyDigest(secret: "old-secret"))?.id == key.id)
        #expect(try await store.key(digest: KeyDigest(secret: "new-secret"))?.id == key.id)

        // Inside the overlap both secrets work and draw on one quota.
        #expect(try await admit(store, secret: "new-secret", now: start.adding(seconds: 1)).outcome == .admitted)
        #expect(try await admit(store, secret: "old-secret", now: start.adding(seconds: 59)).outcome == .admitted)
        #expect(try #require(try await store.usage(id: key.id)).counters["total"]?.used == 3)

        // After it the old secret is refused as revoked; the new one still works.
        let after = start.adding(seconds: 60)
        #expect(try await admit(store, secret: "old-secret", now: after).outcome == .keyRevoked)
        #expect(try await admit(store, secret: "new-secret", now: after).outcome == .admitted)
        #expect(try #require(try await store.usage(id: key.id)).counters["total"]?.used == 4)

        // A second rotation forgets the first secret and keeps the second for its overlap.
        _ = try #require(
            try await store.rotateKey(id: key.id, to: KeyDigest(secret: "newest-secret"), previousUntil: after.adding(seconds: 60)))
        #expect(try await admit(store, secret: "old-secret", now: after).outcome == .invalidKey)
        #expect(try await store.key(digest: KeyDigest(secret: "old-secret")) == nil)
        #expect(try await admit(store, secret: "new-secret", now: after).outcome == .admitted)
        #expect(try await admit(store, secret: "newest-secret", now: after).outcome == .admitted)

        // A taken secret, an unknown id.
        let other = try await makeKey(in: store, secret: "other-secret").key
        await #expect(throws: TollgateError.self) {
            try await store.rotateKey(id: other.id, to: KeyDigest(secret: "new-secret"), previousUntil: after)
        }
        await #expect(throws: TollgateError.self) {
            try await store.rotateKey(id: other.id, to: KeyDigest(secret: "other-secret"), previousUntil: after)
        }
        #expect(try await store.rotateKey(id: KeyID(rawValue: "key_missing"), to: KeyDigest(secret: "x"), previousUntil: after) == nil)
        // A secret rotated away (and still answering `key_revoked`) cannot become another key's.
        await #expect(throws: TollgateError.self) { try await makeKey(in: store, secret: "new-secret") }
        #expect(try await store.key(digest: KeyDigest(secret: "new-secret"))?.id == key.id)
        #expect(try await admit(store, secret: "other-secret").outcome == .admitted)
    }

    /// A process that did not make the rotation finds the key by its previous secret too.
    @Test func aColdStoreFindsThePreviousSecret() async throws {
        let path = try TestPaths.temporaryDirectory().appendingPathComponent("store.sqlite").path
        let start = SystemWallClock().now
        let store = try SQLiteKeyStore(configuration: .init(path: path))
        let key = try await makeKey(in: store, limits: ["10/total"], secret: "old-secret", now: start).key
        _ = try await store.rotateKey(id: key.id, to: KeyDigest(secret: "new-secret"), previousUntil: start.adding(seconds: 60))

        let cold = try SQLiteKeyStore(configuration: .init(path: path))
        #expect(try await admit(cold, secret: "old-secret", now: start.adding(seconds: 1)).outcome == .admitted)
        let colder = try SQLiteKeyStore(configuration: .init(path: path))
        #expect(try await admit(colder, secret: "old-secret", now: start.adding(seconds: 61)).outcome == .keyRevoked)
        #expect(try await admit(colder, secret: "new-secret", now: start.adding(seconds: 61)).outcome == .admitted)
    }

    @Test func aColdRedisInstanceFindsThePreviousSecret() async throws {
        guard RedisServer.isAvailable else { return }
        let namespace = SharedRedis.uniqueNamespace()
        let start = SystemWallClock().now
        let store = try await makeRedisStore(namespace: namespace)
        let key = try await makeKey(in: store, limits: ["10/total"], secret: "old-secret", now: start).key
        _ = try await store.rotateKey(id: key.id, to: KeyDigest(secret: "new-secret"), previousUntil: start.adding(seconds: 60))
        let other = try await makeRedisStore(namespace: namespace)
        #expect(try await admit(other, secret: "old-secret", now: start.adding(seconds: 1)).outcome == .admitted)
        #expect(try await admit(other, secret: "old-secret", now: start.adding(seconds: 61)).outcome == .keyRevoked)
        #expect(try await admit(other, secret: "new-secret", now: start.adding(seconds: 61)).outcome == .admitted)
        await store.close()
        await other.close()
    }

    @Test(arguments: [("24h", Int64(86_400)), ("0s", 0), ("30m", 1800), ("7d", 604_800), ("2w", 1_209_600), ("365d", 31_536_000)])
    func overlapsParse(text: String, seconds: Int64) throws {
        #expect(try RotationOverlap.parse(text) == seconds)
    }

    @Test(arguments: ["", "24", "h", "-1h", "1.5h", "366d", "99999999999999999w", "1y", " 1h", "+1h"])
    func badOverlapsAreRefused(text: String) {
        #expect(throws: TollgateError.self) { try RotationOverlap.parse(text) }
    }
}
