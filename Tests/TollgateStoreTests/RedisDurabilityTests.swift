import Foundation
import NIOCore
import Testing
import TollgateCore
import TollgateRESP
import TollgateRedis
import TollgateTestSupport

/// `durable_writes=1`: a create, edit or revocation is answered only once Redis has it on
/// disk, checked against a real `redis-server` killed with `kill -9`; refused with a clear
/// error where Redis does not fsync every write.
@Suite(.serialized, .enabled(if: RedisServer.isAvailable, "redis-server is not installed: the Redis durability tests are skipped"))
struct RedisDurabilityTests {
    func makeStore(_ redis: RedisServer, durable: Bool) throws -> RedisKeyStore {
        var configuration = try RedisKeyStore.Configuration(
            url: redis.url + (durable ? "?durable_writes=1" : ""), password: nil, commandTimeout: .seconds(2))
        configuration.redis.reconnectBackoffMin = .milliseconds(10)
        return try RedisKeyStore(configuration: configuration, logger: quietLogger)
    }

    /// Appended and fsync'd before every answer: a revocation answered survives `kill -9`.
    @Test func aDurableRevocationSurvivesKill9() async throws {
        let redis = try await RedisServer(arguments: ["--appendonly", "yes", "--appendfsync", "always"])
        let store = try makeStore(redis, durable: true)
        try await store.connect()
        let (key, _) = try await makeKey(in: store, limits: ["100/total"])
        let revoked = try await store.revokeKey(id: key.id, at: SystemWallClock().now)
        #expect(revoked?.revokedAt != nil)
        await store.close()
        redis.kill9()
        try await redis.restart()
        let after = try makeStore(redis, durable: true)
        try await after.connect()
        #expect(try await after.key(id: key.id)?.revokedAt != nil, "the revocation answered is on disk")
        await after.close()
    }

    /// RDB snapshots only: the option is refused at connect, saying what to change; without
    /// it, a revocation made after the last snapshot is lost by `kill -9`, as docs/redis.md
    /// says.
    @Test func snapshotsOnlyAreRefusedAndLoseARevocation() async throws {
        let redis = try await RedisServer(arguments: ["--save", "3600 1"])
        let durable = try makeStore(redis, durable: true)
        do {
            try await durable.connect()
            Issue.record("durable_writes=1 accepted a Redis that fsyncs nothing")
        } catch {
            #expect(error.code == .invalidStoreURL)
            #expect(error.message.contains("appendonly no, appendfsync everysec"), "\(error.message)")
            #expect(error.message.contains("--appendonly yes --appendfsync always"), "\(error.message)")
        }
        let plain = try makeStore(redis, durable: false)
        try await plain.connect()
        let (key, _) = try await makeKey(in: plain, limits: ["100/total"])
        _ = try await redis.execute(RESPCommand("SAVE"))
        _ = try await plain.revokeKey(id: key.id, at: SystemWallClock().now)
        await plain.close()
        redis.kill9()
        try await redis.restart()
        let after = try makeStore(redis, durable: false)
        try await after.connect()
        #expect(try await after.key(id: key.id)?.revokedAt == nil, "the revocation after the snapshot is lost")
        await after.close()
    }

    /// Redis switched to `everysec` while Tollgate runs: the write is made, but the answer
    /// says that it may not survive a crash.
    @Test func aWriteAfterTheSettingChangedSaysItMayBeLost() async throws {
        let redis = try await RedisServer(arguments: ["--appendonly", "yes", "--appendfsync", "always"])
        let store = try makeStore(redis, durable: true)
        try await store.connect()
        let (key, _) = try await makeKey(in: store, limits: ["100/total"])
        _ = try await redis.execute(RESPCommand("CONFIG", "SET", "appendfsync", "everysec"))
        do {
            _ = try await store.revokeKey(id: key.id, at: SystemWallClock().now)
            Issue.record("a revocation that may not be on disk was acknowledged")
        } catch {
            #expect(error.message.contains("the change was made, but Redis may lose it in a crash"), "\(error.message)")
        }
        #expect(try await store.key(id: key.id)?.revokedAt != nil, "made all the same")
        await store.close()
    }
}
