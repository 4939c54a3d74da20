import Logging
import NIOCore
import NIOPosix
import Testing
import TollgateTestSupport

@testable import TollgateRESP

let testLogger = Logger(label: "tollgate.resp.test")

/// Integration tests against a real `redis-server` each test starts. Skipped (with a printed
/// reason) only when `redis-server` is not on PATH. Serialized so that timing-sensitive tests
/// (timeouts, reconnects) do not compete for the two CPUs.
@Suite(.serialized, .enabled(if: RedisServer.isAvailable, "redis-server is not in PATH"))
struct IntegrationTests {
    func client(_ server: RedisServer, _ edit: (inout RESPConfiguration) -> Void = { _ in }) async throws -> RESPClient {
        var config = server.configuration
        config.reconnectBackoffMin = .milliseconds(10)
        config.reconnectBackoffMax = .milliseconds(100)
        edit(&config)
        let client = try RESPClient(configuration: config, logger: testLogger)
        try await client.connect()
        return client
    }

    @Test func pingSetGetIncr() async throws {
        let server = try await RedisServer()
        defer { server.stop() }
        let client = try await client(server)
        #expect(try await client.execute(RESPCommand("PING")) == .simpleString("PONG"))
        #expect(try await client.execute(RESPCommand("SET", "greeting", "hello")) == .simpleString("OK"))
        #expect(try await client.execute(RESPCommand("GET", "greeting")).string == "hello")
        #expect(try await client.execute(RESPCommand("GET", "missing")).isNull)
        #expect(try await client.execute(RESPCommand("INCR", "n")).int == 1)
        #expect(try await client.execute(RESPCommand("INCRBY", "n", 41)).int == 42)
        await #expect(throws: RESPError(.serverError, "WRONGTYPE Operation against a key holding the wrong kind of value")) {
            try await client.execute(RESPCommand("LPUSH", "greeting", "x"))
        }
        let binary = ByteBuffer(bytes: [0, 1, 2, 13, 10, 255])
        _ = try await client.execute(RESPCommand("SET", "bin", .bytes(binary)))
        #expect(try await client.execute(RESPCommand("GET", "bin")).bytes == binary)
        let results = await client.executePipeline([RESPCommand("INCR", "p"), RESPCommand("INCR", "p"), RESPCommand("GET", "p")])
        #expect(results.map { try? $0.get().int } == [1, 2, 2])
        await client.close()
        await #expect(throws: RESPError(.shutdown, "client is shut down")) { try await client.execute(RESPCommand("PING")) }
    }

    @Test func thousandConcurrentPipelinedCommandsMatchTheirReplies() async throws {
        let server = try await RedisServer()
        defer { server.stop() }
        let client = try await client(server) { $0.poolSize = 3 }
        let mismatches = try await withThrowingTaskGroup(of: Int.self) { group in
            for task in 0..<20 {
                group.addTask {
                    // Fire 50 commands without awaiting each, then check every reply.
                    let futures = (0..<50).map { i in client.send(RESPCommand("ECHO", "task\(task)-cmd\(i)")) }
                    var bad = 0
                    for (i, f) in futures.enumerated() where try await f.get().string != "task\(task)-cmd\(i)" { bad += 1 }
                    return bad
                }
            }
            return try await group.reduce(0, +)
        }
        #expect(mismatches == 0)
        // And from the connection's own event loop, the hot-path way.
        let connection = try #require(client.connection())
        let counts = try await connection.eventLoop.flatSubmit {
            EventLoopFuture.whenAllSucceed((0..<1000).map { _ in connection.send(RESPCommand("INCR", "hot")) }, on: connection.eventLoop)
        }.get()
        #expect(counts.map { $0.int! } == Array(1...1000))
        await client.close()
    }

    @Test func selectsDatabase() async throws {
        let server = try await RedisServer()
        defer { server.stop() }
        let db5 = try await client(server) { $0.database = 5 }
        _ = try await db5.execute(RESPCommand("SET", "where", "db5"))
        let db0 = try await client(server)
        #expect(try await db0.execute(RESPCommand("GET", "where")).isNull)
        #expect(try await db5.execute(RESPCommand("GET", "where")).string == "db5")
        await db5.close()
        await db0.close()
        var bad = server.configuration
        bad.database = 999
        await #expect(throws: RESPError.self) { _ = try await RESPConnection.connect(configuration: bad, logger: testLogger) }
    }

    @Test func authWithPasswordAndWrongPassword() async throws {
        let server = try await RedisServer(arguments: ["--requirepass", "right-pw"])
        defer { server.stop() }
        let client = try await client(server) { $0.password = "right-pw" }
        #expect(try await client.execute(RESPCommand("PING")) == .simpleString("PONG"))
        await client.close()

        let logs = LogCapture()
        let logger = logs.logger
        var wrong = server.configuration
        wrong.password = "Wr0ng-Secret-Value"
        do {
            _ = try await RESPConnection.connect(configuration: wrong, logger: logger)
            Issue.record("connected with a wrong password")
        } catch {
            #expect(error.code == .authenticationFailed)
            #expect(!error.description.contains("Wr0ng-Secret-Value"))
        }
        // A pool with a wrong password reports it and logs, without the password.
        let pool = try RESPClient(configuration: wrong, logger: logger)
        await #expect(throws: RESPError.self) { try await pool.connect() }
        await pool.close()
        #expect(!logs.all.isEmpty)
        #expect(logs.all.allSatisfy { !$0.contains("Wr0ng-Secret-Value") })

        // No password at all: the handshake PING gets NOAUTH.
        await #expect(throws: RESPError.self) {
            _ = try await RESPConnection.connect(configuration: server.configuration, logger: testLogger)
        }
        do {
            _ = try await RESPConnection.connect(configuration: server.configuration, logger: testLogger)
        } catch {
            #expect(error.code == .authenticationFailed)
        }
    }

    @Test func authWithACLUser() async throws {
        let server = try await RedisServer(arguments: ["--user", "alice", "on", ">alice-pw", "~*", "&*", "+@all"])
        defer { server.stop() }
        let client = try await client(server) {
            $0.username = "alice"
            $0.password = "alice-pw"
        }
        #expect(try await client.execute(RESPCommand("ACL", "WHOAMI")).string == "alice")
        await client.close()
        var wrong = server.configuration
        wrong.username = "alice"
        wrong.password = "not-alice-pw"
        do {
            _ = try await RESPConnection.connect(configuration: wrong, logger: testLogger)
            Issue.record("connected with a wrong password")
        } catch {
            #expect(error.code == .authenticationFailed)
            #expect(!error.description.contains("not-alice-pw"))
        }
    }

    @Test func evalShaFallsBackToEvalOnNoScript() async throws {
        let server = try await RedisServer()
        defer { server.stop() }
        let client = try await client(server)
        let script = RESPScript("return redis.call('INCRBY', KEYS[1], ARGV[1])")
        #expect(try await client.execute(RESPCommand("SCRIPT", "FLUSH")) == .simpleString("OK"))
        #expect(try await client.execute(RESPCommand("SCRIPT", "EXISTS", .string(script.sha1))) == .array([.integer(0)]))
        #expect(try await client.executeScript(script, keys: ["counter"], args: [5]).int == 5)
        // The fallback EVAL cached the script under the locally computed hash.
        #expect(try await client.execute(RESPCommand("SCRIPT", "EXISTS", .string(script.sha1))) == .array([.integer(1)]))
        #expect(try await client.executeScript(script, keys: ["counter"], args: [2]).int == 7)
        _ = try await client.execute(RESPCommand("SCRIPT", "FLUSH"))
        #expect(try await client.executeScript(script, keys: ["counter"], args: [1]).int == 8)
        // Other script errors are not retried as EVAL.
        let broken = RESPScript("return redis.call('NOPE')")
        await #expect(throws: RESPError.self) { try await client.executeScript(broken) }
        do { _ = try await client.executeScript(broken) } catch { #expect(error.code == .serverError) }
        await client.close()
    }

    @Test func resp3HelloGivesMapReplies() async throws {
        let server = try await RedisServer()
        defer { server.stop() }
        let resp3 = try await client(server) { $0.protocolVersion = .resp3 }
        #expect(resp3.connection()?.protocolVersion == .resp3)
        _ = try await resp3.execute(RESPCommand("HSET", "h", "f1", "v1", "f2", "v2"))
        let reply = try await resp3.execute(RESPCommand("HGETALL", "h"))
        guard case .map(let m) = reply else {
            Issue.record("expected a map, got \(reply)")
            return
        }
        #expect(m[.bulkString(ByteBuffer(string: "f1"))]?.string == "v1")
        #expect(try await resp3.execute(RESPCommand("SISMEMBER", "nope", "x")).bool == false)
        #expect(try await resp3.execute(RESPCommand("GET", "none")) == .null)

        let resp2 = try await client(server)
        let flat = try await resp2.execute(RESPCommand("HGETALL", "h"))
        #expect(flat.array?.count == 4)
        #expect(flat.stringMap?["f2"]?.string == "v2")
        await resp3.close()
        await resp2.close()
    }

    @Test func stoppedServerTimesOutThenRecoversAfterSIGCONT() async throws {
        let server = try await RedisServer()
        defer { server.stop() }
        let client = try await client(server) {
            $0.commandTimeout = .milliseconds(200)
            $0.connectTimeout = .milliseconds(200)
            $0.poolSize = 2
        }
        #expect(try await client.execute(RESPCommand("SET", "k", "v")) == .simpleString("OK"))
        server.signal(SIGSTOP)
        let start = ContinuousClock.now
        do {
            _ = try await client.execute(RESPCommand("GET", "k"))
            Issue.record("a stopped server answered")
        } catch {
            #expect(error.code == .timeout)
        }
        let elapsed = ContinuousClock.now - start
        #expect(elapsed >= .milliseconds(150) && elapsed < .milliseconds(1000), "\(elapsed)")
        // While stopped, commands fail (timeout or fast unavailable); none hang.
        for _ in 0..<5 {
            let t0 = ContinuousClock.now
            await #expect(throws: RESPError.self) { try await client.execute(RESPCommand("GET", "k")) }
            #expect(ContinuousClock.now - t0 < .milliseconds(1000))
        }
        // A connect to the stopped server (TCP is accepted by the kernel) hits the connect timeout.
        var direct = server.configuration
        direct.connectTimeout = .milliseconds(150)
        do {
            _ = try await RESPConnection.connect(configuration: direct, logger: testLogger)
            Issue.record("connected to a stopped server")
        } catch {
            #expect(error.code == .connectTimeout)
        }
        server.signal(SIGCONT)
        let recovered = await eventually {
            (try? await client.execute(RESPCommand("GET", "k")))?.string == "v"
        }
        #expect(recovered)
        await client.close()
    }

    /// A stopped Redis still runs what it received once it goes on: the late reply of a
    /// timed-out INCR arrives, on a connection that can carry a follow-up at once (the
    /// pool may not have another up yet), and meanwhile the pool sent nothing new there.
    @Test func aLateReplyArrivesAfterSIGCONTAndItsConnectionTakesAFollowUp() async throws {
        let server = try await RedisServer()
        defer { server.stop() }
        let client = try await client(server) {
            $0.commandTimeout = .milliseconds(200)
            $0.connectTimeout = .milliseconds(200)
            $0.poolSize = 1
        }
        #expect(try await client.execute(RESPCommand("SET", "n", "10")) == .simpleString("OK"))
        let (late, lateSink) = AsyncStream.makeStream(of: Int.self)
        server.signal(SIGSTOP)
        let timedOut = client.send(RESPCommand("INCR", "n")) { value, connection in
            lateSink.yield(value.int ?? -1)
            connection.send(RESPCommand("DECR", "n")).whenSuccess { lateSink.yield($0.int ?? -1) }
        }
        await #expect(throws: RESPError.self) { try await timedOut.get() }
        // The only connection is stalled: a new command fails at once instead of queueing
        // behind the stalled ones (Redis would run it later, after its caller gave up).
        let t0 = ContinuousClock.now
        do {
            _ = try await client.execute(RESPCommand("INCR", "n"))
            Issue.record("a stopped server answered")
        } catch {
            #expect(error.code == .unavailable, "\(error)")
        }
        #expect(ContinuousClock.now - t0 < .milliseconds(150))
        server.signal(SIGCONT)
        var iterator = late.makeAsyncIterator()
        #expect(await iterator.next() == 11, "Redis ran the INCR that timed out")
        #expect(await iterator.next() == 10, "and the follow-up on the same connection")
        #expect(await eventually { (try? await client.execute(RESPCommand("GET", "n")))?.string == "10" })
        await client.close()
    }

    @Test func killedServerFailsFastAndClientReconnectsAfterRestart() async throws {
        let server = try await RedisServer()
        defer { server.stop() }
        let client = try await client(server) {
            $0.commandTimeout = .seconds(2)
            $0.connectTimeout = .milliseconds(500)
        }
        #expect(try await client.execute(RESPCommand("PING")) == .simpleString("PONG"))
        server.kill9()
        // Every command fails, and long before the 2 s command timeout.
        for _ in 0..<20 {
            let t0 = ContinuousClock.now
            do {
                _ = try await client.execute(RESPCommand("PING"))
            } catch {
                #expect([.connectionClosed, .unavailable].contains(error.code), "\(error)")
            }
            #expect(ContinuousClock.now - t0 < .milliseconds(500))
        }
        let unavailable = await eventually(timeout: .seconds(2)) {
            do { _ = try await client.execute(RESPCommand("PING")); return false } catch let error as RESPError {
                return error.code == .unavailable
            } catch { return false }
        }
        #expect(unavailable)
        try await server.restart()
        let back = await eventually {
            (try? await client.execute(RESPCommand("PING"))) == .simpleString("PONG")
        }
        #expect(back)
        await client.close()
    }

    @Test func startWhileServerIsDownThenComesUp() async throws {
        let port = try await RedisServer.freePort()
        var config = RESPConfiguration(port: port, connectTimeout: .milliseconds(200), commandTimeout: .seconds(2))
        config.reconnectBackoffMin = .milliseconds(10)
        config.reconnectBackoffMax = .milliseconds(100)
        let client = try RESPClient(configuration: config, logger: testLogger)
        await #expect(throws: RESPError.self) { try await client.connect() }
        await #expect(throws: RESPError(.unavailable, "no Redis connection is up; reconnecting")) {
            try await client.execute(RESPCommand("PING"))
        }
        let server = try await RedisServer(port: port)
        defer { server.stop() }
        #expect(await eventually { (try? await client.execute(RESPCommand("PING"))) == .simpleString("PONG") })
        await client.close()
    }

    @Test(arguments: [RESPProtocolVersion.resp2, .resp3])
    func pubSubDeliversAndResubscribesAfterReconnect(_ version: RESPProtocolVersion) async throws {
        let server = try await RedisServer()
        defer { server.stop() }
        let publisher = try await client(server)
        var config = server.configuration
        config.protocolVersion = version
        config.reconnectBackoffMin = .milliseconds(10)
        config.reconnectBackoffMax = .milliseconds(50)
        let (messages, messageSink) = AsyncStream.makeStream(of: String.self)
        let (reconnects, reconnectSink) = AsyncStream.makeStream(of: Void.self)
        let subscriber = try RESPSubscriber(configuration: config, logger: testLogger) { reconnectSink.yield() }
        try await subscriber.connect()
        try await subscriber.subscribe("news") { message in
            messageSink.yield("\(message.channel):\(String(buffer: message.payload))")
        }
        var iterator = messages.makeAsyncIterator()
        #expect(try await publisher.execute(RESPCommand("PUBLISH", "news", "one")).int == 1)
        #expect(await iterator.next() == "news:one")

        server.kill9()
        try await server.restart()
        var reconnectIterator = reconnects.makeAsyncIterator()
        _ = await reconnectIterator.next()
        // Resubscribed before the callback ran, so this publish reaches it.
        let delivered = await eventually {
            (try? await publisher.execute(RESPCommand("PUBLISH", "news", "two")))?.int == 1
        }
        #expect(delivered)
        #expect(await iterator.next() == "news:two")
        await subscriber.close()
        await publisher.close()
    }

    @Test func shutdownFailsPendingCommandsWithShutdown() async throws {
        let server = try await RedisServer()
        defer { server.stop() }
        let client = try await client(server) { $0.poolSize = 1 }
        // BLPOP blocks server-side for a second, so the command is still pending at shutdown.
        let pending = client.send(RESPCommand("BLPOP", "empty-list", 1))
        let t0 = ContinuousClock.now
        await client.close()
        do {
            _ = try await pending.get()
            Issue.record("pending command succeeded after shutdown")
        } catch {
            #expect((error as? RESPError)?.code == .shutdown)
        }
        #expect(ContinuousClock.now - t0 < .milliseconds(500))
        await #expect(throws: RESPError(.shutdown, "client is shut down")) { try await client.execute(RESPCommand("PING")) }
    }

    @Test func aclLoginLogsNoSecretEvenAtTraceLevel() async throws {
        let server = try await RedisServer(arguments: ["--user", "bob", "on", ">bob-Secret-9", "~*", "&*", "+@all"])
        defer { server.stop() }
        let logs = LogCapture()
        let logger = logs.logger
        var config = server.configuration
        config.username = "bob"
        config.password = "bob-Secret-9"
        config.protocolVersion = .resp3
        let client = try RESPClient(configuration: config, logger: logger)
        try await client.connect()
        #expect(try await client.execute(RESPCommand("ACL", "WHOAMI")).string == "bob")
        server.kill9()
        try await server.restart()
        #expect(await eventually { (try? await client.execute(RESPCommand("PING"))) == .simpleString("PONG") })
        await client.close()
        let logged = logs.all
        #expect(!logged.isEmpty)
        #expect(logged.allSatisfy { !$0.contains("bob-Secret-9") })
    }
}
