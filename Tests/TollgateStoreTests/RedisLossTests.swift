import Foundation
import NIOCore
import Testing
import TollgateCore
import TollgateRESP
import TollgateRedis
import TollgateTestSupport

#if canImport(Glibc)
    import Glibc
#endif

/// A Redis that forgets (a flush, a restart without persistence, a snapshot restored) or
/// stalls: what each instance answers must be what Redis holds. Each test runs its own
/// `redis-server`, which it flushes, stops or kills.
@Suite(.serialized, .enabled(if: RedisServer.isAvailable, "redis-server is not installed: the Redis loss tests are skipped"))
struct RedisLossTests {
    func store(_ redis: RedisServer, timeout: TimeAmount = .seconds(2)) async throws -> RedisKeyStore {
        var connection = redis.configuration
        connection.commandTimeout = timeout
        connection.connectTimeout = .milliseconds(500)
        connection.reconnectBackoffMin = .milliseconds(10)
        connection.reconnectBackoffMax = .milliseconds(100)
        let store = try RedisKeyStore(configuration: .init(redis: connection), logger: quietLogger)
        try await store.connect()
        return store
    }

    /// Runs `body` while `store` runs as a service (its change stream and health checks).
    func running(_ store: RedisKeyStore, _ body: () async throws -> Void) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await store.run() }
            try await body()
            group.cancelAll()
        }
    }

    /// `FLUSHALL` under a held key: its next request is refused, not counted from zero, and
    /// the store lists no key (the issue: 200 for 25 s after the flush).
    @Test func aFlushRefusesAHeldKeyAtOnce() async throws {
        let redis = try await RedisServer()
        let store = try await store(redis)
        try await running(store) {
            let (key, secret) = try await makeKey(in: store, limits: ["100/total"])
            #expect(try await admit(store, secret: secret).outcome == .admitted)
            #expect(try await redis.execute(RESPCommand("FLUSHALL")) == .simpleString("OK"))
            #expect(try await admit(store, secret: secret).outcome == .invalidKey, "the first request after the flush")
            #expect(try await admit(store, secret: secret).outcome == .invalidKey)
            #expect(try await store.key(id: key.id) == nil)
            #expect(try await store.allKeys().isEmpty)
        }
    }

    /// `kill -9` without persistence and an immediate restart (about 0.1 s): within a second
    /// the key is refused, and nothing in between is admitted.
    @Test func aFastRestartWithoutPersistenceRefusesTheKeyWithinASecond() async throws {
        try await LoadLock.exclusively {
            let redis = try await RedisServer()
            let store = try await store(redis)
            try await running(store) {
                let (_, secret) = try await makeKey(in: store, limits: ["100/total"])
                #expect(try await admit(store, secret: secret).outcome == .admitted)
                redis.kill9()
                try await redis.restart()
                let restarted = ContinuousClock.now
                var outcomes: [AdmissionDecision.Outcome] = []
                while ContinuousClock.now - restarted < .seconds(1) {
                    let outcome = try await admit(store, secret: secret).outcome
                    outcomes.append(outcome)
                    if outcome == .invalidKey { break }
                    try await Task.sleep(for: .milliseconds(20))
                }
                #expect(outcomes.last == .invalidKey, "refused within a second of the restart: \(outcomes)")
                #expect(!outcomes.contains(.admitted), "nothing admitted for a key Redis lost: \(outcomes)")
            }
        }
    }

    /// After a loss the change stream starts over, so the position an instance had read is
    /// meaningless (here a stream whose ids came from a clock far ahead): it is read again,
    /// and an edit made elsewhere to a key held here still arrives within a second.
    @Test func afterAFlushTheChangeStreamIsFollowedFromItsNewEnd() async throws {
        try await LoadLock.exclusively {
            let redis = try await RedisServer()
            _ = try await redis.execute(RESPCommand("XADD", "tg:changes", "99999999999999-0", "id", "key_ahead"))
            let store = try await store(redis)
            let elsewhere = try await self.store(redis)
            try await running(store) {
                try await Task.sleep(for: .milliseconds(300))  // the stream's end is read
                #expect(try await redis.execute(RESPCommand("FLUSHALL")) == .simpleString("OK"))
                try await Task.sleep(for: .milliseconds(600))  // the loss is seen
                let now = SystemWallClock().now
                let (key, secret) = try await makeKey(
                    in: elsewhere, expiresAt: Timestamp(millisecondsSinceEpoch: now.millisecondsSinceEpoch - 60_000),
                    now: Timestamp(millisecondsSinceEpoch: now.millisecondsSinceEpoch - 120_000))
                #expect(try await admit(store, secret: secret).outcome == .keyExpired, "held here, refused here")
                _ = try await elsewhere.editKey(id: key.id, KeyEdit(expiry: .never))
                let (outcome, after) = try await poll(store, secret: secret, until: .admitted, for: .seconds(1))
                #expect(outcome == .admitted, "the edit made elsewhere arrived (\(after))")
            }
            await elsewhere.close()
        }
    }

    /// A restart that restores an older snapshot (a revocation made after the last `SAVE`
    /// is lost, as docs/redis.md says): every instance then answers what Redis holds, the
    /// one that made the revocation too (a new `run_id`), rather than each its own.
    @Test func afterASnapshotIsRestoredEveryInstanceAnswersWhatRedisHolds() async throws {
        try await LoadLock.exclusively {
            let redis = try await RedisServer()
            let revoking = try await store(redis)
            let other = try await store(redis)
            let (key, secret) = try await makeKey(in: revoking, limits: ["100/total"])
            #expect(try await redis.execute(RESPCommand("SAVE")) == .simpleString("OK"))
            try await running(revoking) {
                #expect(try await admit(revoking, secret: secret).outcome == .admitted)
                _ = try await revoking.revokeKey(id: key.id, at: SystemWallClock().now)
                #expect(try await admit(revoking, secret: secret).outcome == .keyRevoked)
                redis.kill9()
                try await redis.restart()
                #expect(await eventually { (try? await other.key(id: key.id)) != nil }, "Redis restored the key")
                #expect(try await other.key(id: key.id)?.revokedAt == nil, "unrevoked: the revocation came after the snapshot")
                #expect(try await admit(other, secret: secret).outcome == .admitted)
                let (outcome, after) = try await poll(revoking, secret: secret, until: .admitted, for: .seconds(1))
                #expect(outcome == .admitted, "the revoking instance agrees with Redis (\(after))")
            }
            await other.close()
        }
    }

    /// A key edited elsewhere is never admitted on the record held here: the admission
    /// script sees another version and the record is read again in the same request.
    @Test func anEditMadeElsewhereAppliesToTheNextRequest() async throws {
        let redis = try await RedisServer()
        let here = try await store(redis)
        let elsewhere = try await store(redis)
        let (key, secret) = try await makeKey(in: here, limits: ["100/total"])
        #expect(try await admit(here, secret: secret).outcome == .admitted)
        _ = try await elsewhere.revokeKey(id: key.id, at: SystemWallClock().now)
        // `here` does not run its change stream: only the script can tell it.
        #expect(try await admit(here, secret: secret).outcome == .keyRevoked)
        #expect(try await here.usage(id: key.id)?.apis["api1"]?.admitted == 1)
        await here.close()
        await elsewhere.close()
    }

    /// The count: `5/total`, one `200`, Redis stopped, a `503`, Redis goes on: the
    /// script that answered too late gives its unit back, so four more are served.
    @Test func aLateAdmissionGivesItsUnitBack() async throws {
        try await LoadLock.exclusively {
            let redis = try await RedisServer()
            let store = try await store(redis, timeout: .milliseconds(100))
            let (key, secret) = try await makeKey(in: store, limits: ["5/total"])
            #expect(try await admit(store, secret: secret).outcome == .admitted)
            redis.signal(SIGSTOP)
            #expect(try await admit(store, secret: secret).outcome == .storeUnavailable)
            try await Task.sleep(for: .milliseconds(200))
            redis.signal(SIGCONT)
            let given = await eventually {
                (try? await store.usage(id: key.id))?.counters["total"]?.used == 1
            }
            let usage = try await store.usage(id: key.id)
            #expect(given, "the late admission's unit came back: \(String(describing: usage))")
            var outcomes: [AdmissionDecision.Outcome] = []
            for _ in 0..<5 { outcomes.append(try await admit(store, secret: secret).outcome) }
            #expect(outcomes == [.admitted, .admitted, .admitted, .admitted, .quotaExceeded], "five served in all")
            #expect(try await store.usage(id: key.id)?.apis["api1"]?.admitted == 5)
            await store.close()
        }
    }
}
