import Foundation
import NIOHTTP1
import Testing
import TollgateCore
import TollgateRESP
import TollgateRedis
import TollgateTestSupport

/// Rotation across Redis instances: what one instance rotates, another that holds the key
/// takes from the change stream.
@Suite struct RotationLiveTests {
    static func redisStore(namespace: String) async throws -> RedisKeyStore {
        let url = try #require(await SharedRedis.url(), "redis-server did not start")
        var configuration = RedisKeyStore.Configuration(redis: try RESPConfiguration(url: url))
        configuration.namespace = namespace
        let store = try RedisKeyStore(configuration: configuration, logger: quietLogger)
        try await store.connect()
        return store
    }

    /// An instance that holds the key takes a rotation made elsewhere from the change
    /// stream within a second: the old secret is refused there once its (zero) overlap is
    /// over, and the new one works.
    @Test func aWarmRedisInstanceTakesARotationFromTheChangeStream() async throws {
        guard RedisServer.isAvailable else { return }
        let namespace = SharedRedis.uniqueNamespace()
        let writer = try await Self.redisStore(namespace: namespace)
        let server = try await Self.redisStore(namespace: namespace)
        let key = try await makeKey(in: writer, secret: "old-secret").key
        // It times a deadline: apart from the tests that load the machine (see LoadLock).
        try await LoadLock.exclusively {
            try await withDataPlane(store: server) { port in
                #expect(try await httpRequest(port: port, .GET, "/api1", headers: [("token", "old-secret")]).status == 200)
                _ = try await writer.rotateKey(id: key.id, to: KeyDigest(secret: "new-secret"), previousUntil: SystemWallClock().now)
                // Polls the old secret only: a lookup of the new one would load the new record
                // itself, and prove nothing about the change stream.
                let start = ContinuousClock.now
                var code: String? = nil
                while ContinuousClock.now - start < .seconds(3) {
                    code = try await httpRequest(port: port, .GET, "/api1", headers: [("token", "old-secret")]).problemCode
                    if code == "key_revoked" { break }
                    try await Task.sleep(for: .milliseconds(50))
                }
                #expect(code == "key_revoked")
                #expect(ContinuousClock.now - start < .seconds(1))
                #expect(try await httpRequest(port: port, .GET, "/api1", headers: [("token", "new-secret")]).status == 200)
            }
        }
        await writer.close()
    }
}
