import Foundation
import Testing
import TollgateCore
import TollgateRedis
import TollgateSQLite
import TollgateTestSupport

extension StoreKind {
    /// Two handles on one store, as two processes (or two instances on one Redis) hold
    /// them: two SQLite stores on one file, two Redis stores on one namespace; the memory
    /// store has one copy, so both handles are the same store.
    func makeTwoHandles() async throws -> (any KeyStore, any KeyStore) {
        switch self {
        case .memory:
            let store = MemoryKeyStore()
            return (store, store)
        case .sqlite:
            let path = try TestPaths.temporaryDirectory().appendingPathComponent("store.sqlite").path
            return (try SQLiteKeyStore(configuration: .init(path: path)), try SQLiteKeyStore(configuration: .init(path: path)))
        case .redis:
            let namespace = SharedRedis.uniqueNamespace()
            return (try await makeRedisStore(namespace: namespace), try await makeRedisStore(namespace: namespace))
        }
    }
}

// MARK: Edits of some fields

extension StoreConformanceTests {
    @Test(arguments: StoreKind.allCases)
    func anEditOfTheNameKeepsEveryOtherFieldAndTheUsage(kind: StoreKind) async throws {
        let store = try await kind.make()
        let expiry = Timestamp(millisecondsSinceEpoch: SystemWallClock().now.millisecondsSinceEpoch + 86_400_000)
        let key = try await makeKey(in: store, scopes: ["api1"], limits: ["2/day"], secret: "k", expiresAt: expiry).key
        #expect(try await admit(store, secret: "k").outcome == .admitted)

        let edited = try #require(try await store.editKey(id: key.id, KeyEdit(name: "renamed")))
        var expected = key
        expected.name = "renamed"
        #expect(edited == expected)
        #expect(try await store.key(id: key.id) == expected)
        #expect(try await admit(store, secret: "k").outcome == .admitted, "the use before the edit still counts")
        #expect(try await admit(store, secret: "k").outcome == .quotaExceeded)
    }

    @Test(arguments: StoreKind.allCases)
    func anEditChangesOnlyTheFieldsItNamesAndTakesEffectAtOnce(kind: StoreKind) async throws {
        let store = try await kind.make()
        let key = try await makeKey(in: store, scopes: ["api1"], limits: ["1/day"], secret: "k").key
        #expect(try await admit(store, secret: "k", path: "api2").outcome == .scopeDenied)
        let scopes = [try ScopePattern(parsing: "api2")]
        let limits = [try LimitSpec(parsing: "5/day")]
        let edited = try #require(try await store.editKey(id: key.id, KeyEdit(scopes: scopes, limits: limits)))
        #expect(edited.name == key.name && edited.scopes == scopes && edited.limits == limits && edited.expiresAt == nil)
        #expect(edited.digest == key.digest && edited.createdAt == key.createdAt)
        #expect(try await admit(store, secret: "k", path: "api2").outcome == .admitted)
    }

    @Test(arguments: StoreKind.allCases)
    func anEditNeverBringsARevokedKeyBack(kind: StoreKind) async throws {
        let store = try await kind.make()
        let key = try await makeKey(in: store, limits: ["5/day"], secret: "k").key
        let revoked = try #require(try await store.revokeKey(id: key.id, at: SystemWallClock().now))
        let edit = KeyEdit(name: "renamed", scopes: [.all], limits: [], expiry: .never)
        let edited = try #require(try await store.editKey(id: key.id, edit))
        #expect(edited.revokedAt == revoked.revokedAt)
        #expect(edited.name == "renamed")
        #expect(try await store.key(id: key.id)?.revokedAt == revoked.revokedAt)
        #expect(try await admit(store, secret: "k").outcome == .keyRevoked)
    }

    @Test(arguments: StoreKind.allCases)
    func anEditSetsAndRemovesTheExpiry(kind: StoreKind) async throws {
        let store = try await kind.make()
        let now = SystemWallClock().now
        let later = Timestamp(millisecondsSinceEpoch: now.millisecondsSinceEpoch + 3_600_000)
        let key = try await makeKey(in: store, secret: "k", expiresAt: later).key

        let past = Timestamp(millisecondsSinceEpoch: now.millisecondsSinceEpoch - 1000)
        #expect(try await store.editKey(id: key.id, KeyEdit(expiry: .at(past)))?.expiresAt == past)
        #expect(try await admit(store, secret: "k").outcome == .keyExpired)

        let removed = try #require(try await store.editKey(id: key.id, KeyEdit(expiry: .never)))
        #expect(removed.expiresAt == nil && removed.name == key.name)
        #expect(try await store.key(id: key.id)?.expiresAt == nil)
        #expect(try await admit(store, secret: "k").outcome == .admitted)
    }

    @Test(arguments: StoreKind.allCases)
    func anEditKeepsARotation(kind: StoreKind) async throws {
        let store = try await kind.make()
        let now = SystemWallClock().now
        let key = try await makeKey(in: store, secret: "old", now: now).key
        let until = Timestamp(millisecondsSinceEpoch: now.millisecondsSinceEpoch + 3_600_000)
        let rotated = try #require(try await store.rotateKey(id: key.id, to: KeyDigest(secret: "new"), previousUntil: until))
        let edited = try #require(try await store.editKey(id: key.id, KeyEdit(name: "renamed")))
        #expect(edited.digest == rotated.digest && edited.previousDigest == rotated.previousDigest)
        #expect(edited.previousDigestExpiresAt == until)
        #expect(try await admit(store, secret: "old").outcome == .admitted)
        #expect(try await admit(store, secret: "new").outcome == .admitted)
    }

    @Test(arguments: StoreKind.allCases)
    func anEditOfAnUnknownKeyFindsNothing(kind: StoreKind) async throws {
        let store = try await kind.make()
        #expect(try await store.editKey(id: KeyID(rawValue: "key_missing"), KeyEdit(name: "x")) == nil)
        #expect(try await store.key(id: KeyID(rawValue: "key_missing")) == nil, "an edit creates no key")
    }

    /// The lost update this requirement exists for: one caller sets the name while another
    /// sets the limits, through two handles on one store; both must land, every round.
    @Test(arguments: StoreKind.allCases)
    func racingEditsOfDifferentFieldsBothLand(kind: StoreKind) async throws {
        let (first, second) = try await kind.makeTwoHandles()
        let key = try await makeKey(in: first, limits: ["1/day"]).key
        for round in 1...50 {
            let limits = [try LimitSpec(parsing: "\(round)/day")]
            async let named = first.editKey(id: key.id, KeyEdit(name: "round \(round)"))
            async let limited = second.editKey(id: key.id, KeyEdit(limits: limits))
            let (afterName, afterLimits) = try await (named, limited)
            #expect(afterName?.name == "round \(round)")
            #expect(afterLimits?.limits == limits)
            let stored = try #require(try await first.key(id: key.id))
            #expect(stored.name == "round \(round)" && stored.limits == limits, "round \(round) lost an edit")
            if stored.name != "round \(round)" || stored.limits != limits { break }
        }
        if let first = first as? RedisKeyStore { await first.close() }
        if let second = second as? RedisKeyStore { await second.close() }
    }
}

// MARK: Versions (what the admin API's ETag and If-Match rest on)

extension StoreConformanceTests {
    @Test(arguments: StoreKind.allCases)
    func everyChangeMovesTheVersionAndAStaleVersionChangesNothing(kind: StoreKind) async throws {
        let (first, second) = try await kind.makeTwoHandles()
        let now = SystemWallClock().now
        let key = try await makeKey(in: first, limits: ["5/day"], secret: "k", now: now).key
        let read = try #require(try await first.versionedKey(id: key.id))
        #expect(read.key == key)
        #expect(try await second.versionedKey(id: key.id) == read)
        #expect(try await first.versionedKey(id: KeyID(rawValue: "key_missing")) == nil)

        // An edit at the version read lands and moves the version on.
        let edited = try #require(try await second.editKey(id: key.id, KeyEdit(name: "second"), ifVersion: read.version))
        #expect(edited.key.name == "second" && edited.version != read.version)
        #expect(try await first.versionedKey(id: key.id) == edited)

        // The first handle's read is stale now: neither an edit nor a revocation lands.
        await #expect {
            try await first.editKey(id: key.id, KeyEdit(limits: []), ifVersion: read.version)
        } throws: { ($0 as? TollgateError)?.code == .versionMismatch }
        await #expect {
            try await first.revokeKey(id: key.id, at: now, ifVersion: read.version)
        } throws: { ($0 as? TollgateError)?.code == .versionMismatch }
        let stored = try #require(try await first.versionedKey(id: key.id))
        #expect(stored == edited, "nothing was applied")

        // A rotation moves it on too; a revocation at the current version lands.
        let until = Timestamp(millisecondsSinceEpoch: now.millisecondsSinceEpoch + 60_000)
        _ = try await first.rotateKey(id: key.id, to: KeyDigest(secret: "new"), previousUntil: until)
        let rotated = try #require(try await second.versionedKey(id: key.id))
        #expect(rotated.version != edited.version)
        #expect(try await second.revokeKey(id: key.id, at: now, ifVersion: rotated.version)?.revokedAt != nil)
        #expect(try await first.versionedKey(id: key.id)?.version != rotated.version)
        #expect(try await first.editKey(id: KeyID(rawValue: "key_missing"), KeyEdit(name: "x"), ifVersion: 1) == nil)
        #expect(try await first.revokeKey(id: KeyID(rawValue: "key_missing"), at: now, ifVersion: 1) == nil)
        if let first = first as? RedisKeyStore { await first.close() }
        if let second = second as? RedisKeyStore { await second.close() }
    }
}
