import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// What a finished `tollgate` command printed.
public struct CommandResult: Sendable {
    public var status: Int32
    public var stdout: String
    public var stderr: String

    /// Parses stdout as one JSON value.
    public func json() throws -> Any {
        try JSONSerialization.jsonObject(with: Data(stdout.utf8))
    }
}

/// A child process whose exit can be awaited without blocking a thread of the cooperative
/// pool (tests run in parallel on two cores; a blocked thread stalls every other test).
final class AwaitableProcess: Sendable {
    let process: Process
    private let exited: AsyncStream<Int32>
    private let status = Mutex<Int32?>(nil)

    init(_ configure: (Process) throws -> Void) throws {
        let process = Process()
        let (stream, continuation) = AsyncStream<Int32>.makeStream()
        process.terminationHandler = { process in
            continuation.yield(process.terminationStatus)
            continuation.finish()
        }
        try configure(process)
        try process.run()
        self.process = process
        self.exited = stream
    }

    func exitStatus() async -> Int32 {
        if let status = status.withLock({ $0 }) { return status }
        for await code in exited {
            status.withLock { $0 = code }
            return code
        }
        return status.withLock { $0 } ?? -1
    }
}

/// Runs the built binary with `arguments` and waits for it; `environment` is added to the
/// test's own.
public func tollgate(_ arguments: [String], stdin: String? = nil, environment: [String: String] = [:]) async throws -> CommandResult {
    let directory = try TestPaths.temporaryDirectory()
    let out = directory.appendingPathComponent("stdout")
    let err = directory.appendingPathComponent("stderr")
    let input = directory.appendingPathComponent("stdin")
    try Data((stdin ?? "").utf8).write(to: input)
    _ = FileManager.default.createFile(atPath: out.path, contents: nil)
    _ = FileManager.default.createFile(atPath: err.path, contents: nil)
    let child = try AwaitableProcess { process in
        process.executableURL = URL(fileURLWithPath: TestPaths.binary)
        process.arguments = arguments
        if !environment.isEmpty { process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
        process.standardOutput = try FileHandle(forWritingTo: out)
        process.standardError = try FileHandle(forWritingTo: err)
        process.standardInput = try FileHandle(forReadingFrom: input)
    }
    let status = await child.exitStatus()
    return CommandResult(
        status: status,
        stdout: (try? String(contentsOf: out, encoding: .utf8)) ?? "",
        stderr: (try? String(contentsOf: err, encoding: .utf8)) ?? ""
    )
}

/// A running `tollgate serve`, its output going to files so that nothing blocks on a pipe.
public final class ServerProcess: Sendable {
    let child: AwaitableProcess
    public let port: Int
    public let adminPort: Int
    let stdoutURL: URL
    let stderrURL: URL

    /// Starts `tollgate serve` on free ports and waits until both listeners are bound.
    /// `shellPrefix`, when given, runs first in `/bin/sh` (e.g. `ulimit -n 64`).
    public init(arguments: [String], directory: URL, shellPrefix: String? = nil) async throws {
        let stdoutURL = directory.appendingPathComponent("serve-\(UUID().uuidString).out")
        let stderrURL = directory.appendingPathComponent("serve-\(UUID().uuidString).err")
        _ = FileManager.default.createFile(atPath: stdoutURL.path, contents: nil)
        _ = FileManager.default.createFile(atPath: stderrURL.path, contents: nil)
        self.stdoutURL = stdoutURL
        self.stderrURL = stderrURL
        child = try AwaitableProcess { process in
            let serve = ["serve", "--port", "0", "--admin-port", "0"] + arguments
            if let shellPrefix {
                process.executableURL = URL(fileURLWithPath: "/bin/sh")
                process.arguments = ["-c", "\(shellPrefix); exec \"$0\" \"$@\"", TestPaths.binary] + serve
            } else {
                process.executableURL = URL(fileURLWithPath: TestPaths.binary)
                process.arguments = serve
            }
            process.currentDirectoryURL = directory
            process.standardOutput = try FileHandle(forWritingTo: stdoutURL)
            process.standardError = try FileHandle(forWritingTo: stderrURL)
        }
        let deadline = ContinuousClock.now + .seconds(30)
        var ports: (Int, Int)?
        while ports == nil && ContinuousClock.now < deadline && child.process.isRunning {
            let text = (try? String(contentsOf: stdoutURL, encoding: .utf8)) ?? ""
            if let data = Self.port(after: "Data plane: http://", in: text),
                let admin = Self.port(after: "Control plane: http://", in: text)
            {
                ports = (data, admin)
            } else {
                try await Task.sleep(for: .milliseconds(20))
            }
        }
        guard let ports else {
            if child.process.isRunning { kill(child.process.processIdentifier, SIGKILL) }
            throw ServerProcessError.didNotStart(stderr: (try? String(contentsOf: stderrURL, encoding: .utf8)) ?? "")
        }
        (port, adminPort) = ports
    }

    static func port(after marker: String, in text: String) -> Int? {
        guard let range = text.range(of: marker) else { return nil }
        let line = text[range.upperBound...].prefix { $0 != "\n" }
        return line.split(separator: ":").last.flatMap { Int($0) }
    }

    public var pid: Int32 { child.process.processIdentifier }

    /// Resident memory in bytes, from `/proc`.
    public var residentBytes: Int {
        let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
        let line = status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") } ?? ""
        return (line.split(separator: " ").dropFirst().first.flatMap { Int($0) } ?? 0) * 1024
    }

    /// CPU time used so far (user + system), from `/proc`.
    public var cpuSeconds: Double {
        let stat = (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)) ?? ""
        // Fields after the command name, which is in parentheses and may hold spaces.
        let fields = stat.split(separator: ")").last?.split(separator: " ") ?? []
        guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { return 0 }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    public var stdout: String { (try? String(contentsOf: stdoutURL, encoding: .utf8)) ?? "" }
    public var stderr: String { (try? String(contentsOf: stderrURL, encoding: .utf8)) ?? "" }

    /// Sends `signal` and waits for the process to exit; returns its status.
    @discardableResult
    public func stop(signal: Int32 = SIGTERM) async -> Int32 {
        if child.process.isRunning { kill(child.process.processIdentifier, signal) }
        return await child.exitStatus()
    }

    deinit {
        if child.process.isRunning { kill(child.process.processIdentifier, SIGKILL) }
    }
}

public enum ServerProcessError: Error {
    case didNotStart(stderr: String)
}
