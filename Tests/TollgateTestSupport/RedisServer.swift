import Foundation
import Logging
import NIOCore
import NIOPosix
import TollgateRESP

#if canImport(Glibc)
    import Glibc
#endif

/// A throwaway `redis-server` on a free loopback port, in its own temp dir.
public final class RedisServer: @unchecked Sendable {
    public static let executable: String? = {
        for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/usr/local/bin").split(separator: ":") {
            let path = "\(dir)/redis-server"
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
        print("redis-server not found in PATH: integration tests are skipped")
        return nil
    }()

    public static var isAvailable: Bool { executable != nil }

    public let port: Int
    public let directory: URL
    public let arguments: [String]
    public private(set) var process: Process

    /// Starts a server (on `port`, or a free one) and waits until it answers.
    ///
    /// A free port is found by binding port 0 and closing it, so another process (another
    /// test's outgoing connection, say) may take it before `redis-server` binds it: the
    /// server then exits at once, and another free port is tried, up to three times.
    public init(arguments: [String] = [], port: Int? = nil) async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tollgate-resp-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        var attempt = 1
        while true {
            let chosen: Int
            if let port { chosen = port } else { chosen = try await Self.freePort() }
            let process = try Self.launch(port: chosen, directory: directory, arguments: arguments)
            do {
                try await Self.waitUntilReady(port: chosen, process: process)
                self.port = chosen
                self.process = process
                break
            } catch {
                if process.isRunning {
                    process.terminate()
                    process.waitUntilExit()
                }
                guard port == nil, attempt < 3 else { throw error }
                attempt += 1
            }
        }
        self.directory = directory
        self.arguments = arguments
    }

    private static func launch(port: Int, directory: URL, arguments: [String]) throws -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Self.executable!)
        p.arguments = ["--port", "\(port)", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", directory.path] + arguments
        p.currentDirectoryURL = directory
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        return p
    }

    public static func freePort() async throws -> Int {
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .bind(host: "127.0.0.1", port: 0).get()
        let port = channel.localAddress!.port!
        try await channel.close()
        return port
    }

    public var configuration: RESPConfiguration {
        RESPConfiguration(host: "127.0.0.1", port: self.port, commandTimeout: .seconds(2))
    }

    /// Sends one command on a connection of its own, as an operator's `redis-cli` would.
    public func execute(_ command: RESPCommand) async throws -> RESPValue {
        let client = try RESPClient(configuration: configuration, logger: Logger(label: "tollgate.test.redis"))
        try await client.connect()
        do {
            let reply = try await client.execute(command)
            await client.close()
            return reply
        } catch {
            await client.close()
            throw error
        }
    }

    /// Polls until the server answers anything (NOAUTH counts), for up to 10 s (a loaded
    /// two-core box; the server's exit ends the wait at once).
    public func waitUntilReady() async throws {
        try await Self.waitUntilReady(port: port, process: process)
    }

    /// As above; fails at once if the server has exited (its port was taken, say). A RESP
    /// handshake, not a bare connect: whatever else took the port does not pass for Redis.
    fileprivate static func waitUntilReady(port: Int, process: Process) async throws {
        let deadline = ContinuousClock.now + .seconds(10)
        var config = RESPConfiguration(host: "127.0.0.1", port: port, commandTimeout: .seconds(2))
        config.connectTimeout = .milliseconds(200)
        while true {
            do {
                let c = try await RESPConnection.connect(configuration: config, logger: Logger(label: "probe"))
                await c.close()
                return
            } catch  where error.code == .authenticationFailed {
                return
            } catch {
                if ContinuousClock.now > deadline || !process.isRunning { throw error }
                try await Task.sleep(for: .milliseconds(10))
            }
        }
    }

    public func signal(_ sig: Int32) {
        kill(self.process.processIdentifier, sig)
    }

    /// SIGKILL and wait for exit.
    public func kill9() {
        self.signal(SIGKILL)
        self.process.waitUntilExit()
    }

    /// Starts the server again on the same port.
    public func restart() async throws {
        self.process = try Self.launch(port: self.port, directory: self.directory, arguments: self.arguments)
        try await self.waitUntilReady()
    }

    public func stop() {
        if self.process.isRunning {
            self.signal(SIGCONT)
            self.signal(SIGKILL)
            self.process.waitUntilExit()
        }
        try? FileManager.default.removeItem(at: self.directory)
    }

    /// The store URL for Tollgate.
    public var url: String { "redis://127.0.0.1:\(port)" }

    deinit { self.stop() }
}

/// One `redis-server` for every test in this process that needs only a Redis, not control
/// over it; each store on it gets a namespace of its own. It exits with the test process
/// (a watchdog in its shell stops it when the parent is gone), so no server outlives a run.
public enum SharedRedis {
    private static let server = Task<(port: Int, process: Process)?, Never> {
        guard let executable = RedisServer.executable else { return nil }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tollgate-redis-\(UUID().uuidString)")
        try? FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        // As `RedisServer.init`: a free port may be taken before the server binds it (it then
        // exits at once), so another is tried, up to three times.
        for _ in 0..<3 {
            guard let port = try? await RedisServer.freePort() else { return nil }
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/bin/sh")
            let parent = getpid()
            process.arguments = [
                "-c",
                "\"$0\" --port \(port) --bind 127.0.0.1 --save '' --appendonly no --dir '\(directory.path)' & r=$!; "
                    + "while kill -0 \(parent) 2>/dev/null && kill -0 $r 2>/dev/null; do sleep 0.5; done; kill -9 $r",
                executable,
            ]
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            do { try process.run() } catch { return nil }
            // Until it answers, or its shell exits with it.
            if (try? await RedisServer.waitUntilReady(port: port, process: process)) != nil { return (port, process) }
            // Alive but silent for 10 s: give up (its watchdog stops it with this process).
            if process.isRunning { return nil }
        }
        return nil
    }

    /// `redis://127.0.0.1:PORT` of the shared server, or `nil` when `redis-server` is absent.
    /// With a 2 s command timeout: the shared server answers every test of the process at
    /// once on a loaded two-core box, where the default 100 ms would time the machine, not the
    /// store. The tests of the timeout itself run their own servers with their own settings.
    public static func url() async -> String? {
        await server.value.map { "redis://127.0.0.1:\($0.port)?timeout=2000" }
    }

    /// A namespace no other store in this process uses.
    public static func uniqueNamespace() -> String {
        "t" + UUID().uuidString.prefix(8).lowercased()
    }
}
