import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Testing
import TollgateAdmin
import TollgateCore
import TollgateRESP
import TollgateRedis
import TollgateSQLite
import TollgateTestSupport

/// Two handles on one store, as two Tollgate instances (or a server and the CLI) share it:
/// two SQLite stores on one file, two Redis stores on one namespace; for memory, one store.
private func withTwoHandles(_ kind: GatewayStore, _ body: (any KeyStore, any KeyStore) async throws -> Void) async throws {
    switch kind {
    case .memory:
        let store = MemoryKeyStore()
        try await body(store, store)
    case .sqlite:
        let path = try TestPaths.temporaryDirectory().appendingPathComponent("admin.sqlite").path
        let first = try SQLiteKeyStore(configuration: .init(path: path))
        let second = try SQLiteKeyStore(configuration: .init(path: path))
        try await body(first, second)
    case .redis:
        let url = try #require(await SharedRedis.url(), "redis-server did not start")
        var configuration = RedisKeyStore.Configuration(redis: try RESPConfiguration(url: url))
        configuration.namespace = SharedRedis.uniqueNamespace()
        let first = try RedisKeyStore(configuration: configuration, logger: quietLogger)
        let second = try RedisKeyStore(configuration: configuration, logger: quietLogger)
        try await first.connect()
        try await second.connect()
        try await body(first, second)
        await first.close()
        await second.close()
    }
}

@Suite struct AdminEditRaceTests {
    /// A PATCH of the name racing a PATCH of the limits: both land, every round, and each
    /// answer is the record as stored (so it shows its own change).
    @Test(arguments: GatewayStore.allCases)
    func racingPatchesOfDifferentFieldsBothLand(kind: GatewayStore) async throws {
        try await withTwoHandles(kind) { first, second in
            let key = try await makeKey(in: first, limits: ["1/day"]).key
            let uri = "/admin/v1/keys/\(key.id)"
            try await adminApp(store: first).test(.router) { a in
                try await adminApp(store: second).test(.router) { b in
                    for round in 1...20 {
                        async let named = a.execute(
                            uri: uri, method: .patch, headers: adminHeaders(json: true), body: body(#"{"name":"round \#(round)"}"#))
                        async let limited = b.execute(
                            uri: uri, method: .patch, headers: adminHeaders(json: true), body: body(#"{"limits":["\#(round)/day"]}"#))
                        let (afterName, afterLimits) = try await (named, limited)
                        #expect(afterName.status == .ok && afterLimits.status == .ok)
                        #expect(try jsonObject(afterName)["name"] as? String == "round \(round)")
                        #expect(try jsonObject(afterLimits)["limits"] as? [String] == ["\(round)/day"])

                        let shown = try jsonObject(try await a.execute(uri: uri, method: .get, headers: adminHeaders()))
                        let landed = shown["name"] as? String == "round \(round)" && shown["limits"] as? [String] == ["\(round)/day"]
                        #expect(landed, "round \(round) lost an edit: \(shown)")
                        if !landed { break }
                    }
                }
            }
        }
    }

    /// A PATCH after a DELETE (or racing one) never brings the key back.
    @Test func aPatchOfARevokedKeyKeepsItRevoked() async throws {
        let store = MemoryKeyStore()
        let key = try await makeKey(in: store).key
        _ = try await store.revokeKey(id: key.id, at: SystemWallClock().now)
        try await adminApp(store: store).test(.router) { client in
            let patched = try await client.execute(
                uri: "/admin/v1/keys/\(key.id)", method: .patch, headers: adminHeaders(json: true), body: body(#"{"name":"back?"}"#))
            #expect(patched.status == .ok)
            #expect(try jsonObject(patched)["status"] as? String == "revoked")
            #expect(try await store.key(id: key.id)?.revokedAt != nil)
        }
    }
}
