import Foundation
import NIOCore
import NIOHTTP1
import Synchronization
import Testing
import TollgateRESP
import TollgateTestSupport

#if canImport(Glibc)
    import Glibc
#endif

/// Several `tollgate serve` processes on one real `redis-server`, as users run them behind a
/// load balancer. Skipped only where `redis-server` is not installed (CI installs it).
@Suite(.serialized, .enabled(if: RedisServer.isAvailable, "redis-server is not installed: the Redis instance tests are skipped"))
struct RedisInstancesTests {
    let directory: URL

    init() throws {
        directory = try TestPaths.temporaryDirectory()
    }

    func usage(_ url: String, _ id: String) async throws -> [String: Any] {
        let result = try await tollgate(["usage", id, "--json", "--store", url])
        #expect(result.status == 0, "\(result.stderr)")
        return try #require(try result.json() as? [String: Any])
    }

    /// Three instances, 96 clients spread over them, one key with a quota of 150: exactly
    /// 150 `200`s, every other answer `429`, and the same usage from any instance.
    @Test func threeInstancesShareOneExactQuota() async throws {
        try await LoadLock.exclusively {
            let redis = try await RedisServer()
            let (id, key) = try await createKey(redis.url, ["--scope", "*", "--limit", "150/total"])
            var servers: [ServerProcess] = []
            for _ in 0..<3 { servers.append(try await ServerProcess(arguments: ["--store", redis.url], directory: directory)) }
            let ports = servers.map(\.port)
            let statuses = try await withThrowingTaskGroup(of: [Int].self) { group in
                for client in 0..<96 {
                    let port = ports[client % 3]
                    group.addTask {
                        try await TestHTTPConnection.with(port: port) { connection in
                            var seen: [Int] = []
                            for _ in 0..<4 {
                                seen.append(
                                    Int(
                                        try await connection.send(
                                            .GET, client.isMultiple(of: 2) ? "/api1" : "/api2", headers: [("token", key)]
                                        ).status))
                            }
                            return seen
                        }
                    }
                }
                return try await group.reduce(into: []) { $0 += $1 }
            }
            #expect(statuses.count == 384)
            #expect(statuses.filter { $0 == 200 }.count == 150, "exactly the quota across three instances")
            #expect(statuses.filter { $0 == 429 }.count == 234)
            let report = try await usage(redis.url, id)
            let apis = try #require(report["apis"] as? [String: [String: Any]])
            let admitted = apis.values.compactMap { $0["admitted"] as? Int }.reduce(0, +)
            let denied = apis.values.compactMap { $0["denied"] as? Int }.reduce(0, +)
            #expect(admitted == 150)
            #expect(denied == 234)
            // Every instance restarted: the usage is Redis's, and stays.
            for server in servers { await server.stop() }
            let restarted = try await ServerProcess(arguments: ["--store", redis.url], directory: directory)
            #expect(try await httpRequest(port: restarted.port, .GET, "/api1", headers: [("token", key)]).status == 429)
            await restarted.stop()
            // No plaintext secret anywhere in Redis: every key and every value.
            let dump = try await dumpEverything(redis)
            #expect(!dump.isEmpty)
            #expect(!dump.contains(key), "the secret is in Redis")
        }
    }

    /// Redis hung (SIGSTOP) or killed mid-load: `503`s within the command timeout, never a
    /// hang and never an uncounted `200`; service resumes by itself when Redis returns.
    @Test func anOutageAnswers503AndEveryServedRequestIsCounted() async throws {
        try await LoadLock.exclusively {
            // Durable Redis, so that a SIGKILL loses nothing Redis acknowledged.
            let redis = try await RedisServer(arguments: ["--appendonly", "yes", "--appendfsync", "always"])
            let (id, key) = try await createKey(redis.url, ["--scope", "*", "--limit", "1000000/total"])
            // A 100 ms command timeout, so that the hang is seen well within the second below.
            let server = try await ServerProcess(arguments: ["--store", redis.url + "?timeout=100"], directory: directory)
            let port = server.port
            let load = LoadState()
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<8 {
                    group.addTask {
                        while !load.stop.load(ordering: .relaxed) {
                            let start = ContinuousClock.now
                            let status = (try? await httpRequest(port: port, .GET, "/api1", headers: [("token", key)]).status) ?? 0
                            let took = ContinuousClock.now - start
                            load.slowest.withLock { $0 = max($0, took) }
                            if status == 200 { load.served.add(1, ordering: .relaxed) }
                            if status == 503 { load.refused.add(1, ordering: .relaxed) }
                        }
                    }
                }
                try await Task.sleep(for: .milliseconds(500))
                redis.signal(SIGSTOP)
                try await Task.sleep(for: .seconds(1))
                let refusedWhileHung = load.refused.load(ordering: .relaxed)
                let readyWhileHung = try await httpRequest(port: server.adminPort, .GET, "/readyz").status
                redis.signal(SIGCONT)
                try await Task.sleep(for: .milliseconds(800))
                let servedAfterResume = load.served.load(ordering: .relaxed)
                redis.kill9()
                try await Task.sleep(for: .milliseconds(500))
                try await redis.restart()
                try await Task.sleep(for: .seconds(1))
                load.stop.store(true, ordering: .relaxed)
                try await group.waitForAll()
                #expect(refusedWhileHung > 0, "a hung Redis answers 503")
                #expect(readyWhileHung == 503, "not ready while Redis does not answer")
                #expect(servedAfterResume > 0)
            }
            #expect(load.slowest.withLock { $0 } < .seconds(2), "no request hung: the slowest took \(load.slowest.withLock { $0 })")
            // Service came back after the restart, without restarting Tollgate.
            #expect(try await httpRequest(port: port, .GET, "/api1", headers: [("token", key)]).status == 200)
            #expect(try await httpRequest(port: server.adminPort, .GET, "/readyz").status == 200)
            let answered = load.served.load(ordering: .relaxed) + 1
            let report = try await usage(redis.url, id)
            let limits = try #require(report["limits"] as? [[String: Any]])
            let used = try #require(limits.first?["used"] as? Int)
            #expect(used >= answered, "used \(used) < \(answered) answered 200")
            await server.stop()
        }
    }

    /// The CLI works against Redis exactly as against SQLite: create, import (idempotent),
    /// list, show, revoke, usage; and a demo start on Redis.
    @Test func theCLIWorksOnRedisAsOnSQLite() async throws {
        let redis = try await RedisServer()
        let (id, _) = try await createKey(redis.url, ["--name", "partner", "--scope", "api1", "--limit", "api1:10/minute"])
        let lines = """
            {"key": "imported-one", "scopes": ["api1"], "limits": ["5/day"], "name": "one"}
            {"digest": "\(String(repeating: "ab", count: 32))", "scopes": ["*"], "id": "key_migrated"}
            """
        let imported = try await tollgate(["keys", "import", "-", "--store", redis.url], stdin: lines)
        #expect(imported.status == 0, "\(imported.stderr)")
        #expect(imported.stdout.contains("Imported 2 keys"))
        let again = try await tollgate(["keys", "import", "-", "--store", redis.url], stdin: lines)
        #expect(again.stdout.contains("Imported 0 keys; skipped 2"))
        let list = try #require(try await tollgate(["keys", "list", "--json", "--store", redis.url]).json() as? [[String: Any]])
        #expect(list.count == 3)
        #expect(list.map { $0["id"] as? String ?? "" } == list.map { $0["id"] as? String ?? "" }.sorted(), "in id order")
        let shown = try #require(try await tollgate(["keys", "show", id, "--json", "--store", redis.url]).json() as? [String: Any])
        #expect(shown["name"] as? String == "partner")
        #expect(shown["key"] == nil, "no secret in listings")
        #expect(try await tollgate(["keys", "revoke", id, "--store", redis.url]).status == 0)
        let revoked = try #require(try await tollgate(["keys", "show", id, "--json", "--store", redis.url]).json() as? [String: Any])
        #expect(revoked["status"] as? String == "revoked")
        let report = try await usage(redis.url, id)
        #expect((report["limits"] as? [[String: Any]])?.first?["limit"] as? Int == 10)
        // Redis that is not there: one clear line, exit 1.
        let down = try await tollgate(["keys", "list", "--store", "redis://127.0.0.1:1"])
        #expect(down.status == 1)
        #expect(down.stderr.contains("cannot reach Redis"))
        // --demo on Redis, twice: the keys come back with their full quota.
        for _ in 0..<2 {
            let server = try await ServerProcess(arguments: ["--store", redis.url, "--demo"], directory: directory)
            var statuses: [Int] = []
            for _ in 0..<6 {
                statuses.append(try await httpRequest(port: server.port, .GET, "/api1", headers: [("token", "demo5")]).status)
            }
            #expect(statuses == [200, 200, 200, 200, 200, 429])
            await server.stop()
        }
    }

    /// Every key and value in Redis, as text.
    func dumpEverything(_ redis: RedisServer) async throws -> String {
        let client = try RESPClient(configuration: redis.configuration, logger: quietLogger)
        try await client.connect()
        var text = ""
        var cursor = "0"
        repeat {
            let reply = try await client.execute(RESPCommand("SCAN", .string(cursor), "COUNT", 1000)).array ?? []
            cursor = reply.first?.string ?? "0"
            for name in (reply.last?.array ?? []).compactMap(\.string) {
                text += name + "\n"
                let type = try await client.execute(RESPCommand("TYPE", .string(name))).string ?? ""
                let value: RESPValue
                switch type {
                case "string": value = try await client.execute(RESPCommand("GET", .string(name)))
                case "hash": value = try await client.execute(RESPCommand("HGETALL", .string(name)))
                case "zset": value = try await client.execute(RESPCommand("ZRANGE", .string(name), 0, -1))
                case "stream": value = try await client.execute(RESPCommand("XRANGE", .string(name), "-", "+"))
                default: value = .null
                }
                text += "\(value)\n"
            }
        } while cursor != "0"
        await client.close()
        return text
    }
}

/// `tollgate keys create --json --store URL`; the new key's id and secret.
func createKey(_ url: String, _ extra: [String]) async throws -> (id: String, key: String) {
    let result = try await tollgate(["keys", "create", "--json", "--store", url] + extra)
    #expect(result.status == 0, "\(result.stderr)")
    let object = try #require(try result.json() as? [String: Any])
    return (try #require(object["id"] as? String), try #require(object["key"] as? String))
}

/// What the load tasks of the outage test share.
final class LoadState: Sendable {
    let served = Atomic<Int>(0)
    let refused = Atomic<Int>(0)
    let slowest = Mutex<Duration>(.zero)
    let stop = Atomic<Bool>(false)
}
