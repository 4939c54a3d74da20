import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

@testable import TollgateRESP

/// A throwaway `redis-server` on a free loopback port, in its own temp dir.
final class RedisServer: @unchecked Sendable {
    static let executable: String? = {
        for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/usr/local/bin").split(separator: ":") {
            let path = "\(dir)/redis-server"
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
        print("redis-server not found in PATH: integration tests are skipped")
        return nil
    }()

    static var isAvailable: Bool { executable != nil }

    let port: Int
    let directory: URL
    let arguments: [String]
    private(set) var process: Process

    /// Starts a server (on `port`, or a free one) and waits until it answers.
    init(arguments: [String] = [], port: Int? = nil) async throws {
        if let port { self.port = port } else { self.port = try await Self.freePort() }
        self.directory = FileManager.default.temporaryDirectory.appendingPathComponent("tollgate-resp-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: self.directory, withIntermediateDirectories: true)
        self.arguments = arguments
        self.process = try Self.launch(port: self.port, directory: self.directory, arguments: arguments)
        try await self.waitUntilReady()
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

    static func freePort() async throws -> Int {
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .bind(host: "127.0.0.1", port: 0).get()
        let port = channel.localAddress!.port!
        try await channel.close()
        return port
    }

    var configuration: RESPConfiguration {
        RESPConfiguration(host: "127.0.0.1", port: self.port, commandTimeout: .seconds(2))
    }

    /// Polls until the server answers anything (NOAUTH counts), with a 5 s deadline.
    func waitUntilReady() async throws {
        let deadline = ContinuousClock.now + .seconds(5)
        var config = self.configuration
        config.connectTimeout = .milliseconds(200)
        while true {
            do {
                let c = try await RESPConnection.connect(configuration: config, logger: Logger(label: "probe"))
                await c.close()
                return
            } catch  where error.code == .authenticationFailed {
                return
            } catch {
                if ContinuousClock.now > deadline { throw error }
                try await Task.sleep(for: .milliseconds(10))
            }
        }
    }

    func signal(_ sig: Int32) {
        kill(self.process.processIdentifier, sig)
    }

    /// SIGKILL and wait for exit.
    func kill9() {
        self.signal(SIGKILL)
        self.process.waitUntilExit()
    }

    /// Starts the server again on the same port.
    func restart() async throws {
        self.process = try Self.launch(port: self.port, directory: self.directory, arguments: self.arguments)
        try await self.waitUntilReady()
    }

    func stop() {
        if self.process.isRunning {
            self.signal(SIGCONT)
            self.signal(SIGKILL)
            self.process.waitUntilExit()
        }
        try? FileManager.default.removeItem(at: self.directory)
    }

    deinit { self.stop() }
}

/// Collects every log line (message and metadata) to check that no secret is logged.
struct CapturingLogHandler: LogHandler {
    let lines: NIOLockedValueBox<[String]>
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace
    var metadataProvider: Logger.MetadataProvider?

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { self.metadata[key] }
        set { self.metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let all = self.metadata.merging(event.metadata ?? [:]) { $1 }
        self.lines.withLockedValue { $0.append("\(event.level) \(event.message) \(all)") }
    }
}

/// Polls `body` until it returns true or `timeout` passes.
func eventually(timeout: Duration = .seconds(5), _ body: () async -> Bool) async -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if await body() { return true }
        try? await Task.sleep(for: .milliseconds(10))
    }
    return await body()
}
