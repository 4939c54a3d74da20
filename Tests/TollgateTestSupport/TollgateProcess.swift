import Foundation

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

/// Runs the built binary with `arguments` and waits for it.
public func tollgate(_ arguments: [String], stdin: String? = nil) throws -> CommandResult {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: TestPaths.binary)
    process.arguments = arguments
    let out = Pipe()
    let err = Pipe()
    process.standardOutput = out
    process.standardError = err
    let input = Pipe()
    process.standardInput = input
    try process.run()
    if let stdin { input.fileHandleForWriting.write(Data(stdin.utf8)) }
    try input.fileHandleForWriting.close()
    let stdout = out.fileHandleForReading.readDataToEndOfFile()
    let stderr = err.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return CommandResult(
        status: process.terminationStatus,
        stdout: String(decoding: stdout, as: UTF8.self),
        stderr: String(decoding: stderr, as: UTF8.self)
    )
}

/// A running `tollgate serve`, its output going to files so that nothing blocks on a pipe.
public final class ServerProcess: @unchecked Sendable {
    public let process = Process()
    public let port: Int
    public let adminPort: Int
    let stdoutURL: URL
    let stderrURL: URL

    /// Starts `tollgate serve` on free ports and waits until both listeners are bound.
    public init(arguments: [String], directory: URL) throws {
        stdoutURL = directory.appendingPathComponent("serve-\(UUID().uuidString).out")
        stderrURL = directory.appendingPathComponent("serve-\(UUID().uuidString).err")
        _ = FileManager.default.createFile(atPath: stdoutURL.path, contents: nil)
        _ = FileManager.default.createFile(atPath: stderrURL.path, contents: nil)
        process.executableURL = URL(fileURLWithPath: TestPaths.binary)
        process.arguments = ["serve", "--port", "0", "--admin-port", "0"] + arguments
        process.currentDirectoryURL = directory
        process.standardOutput = try FileHandle(forWritingTo: stdoutURL)
        process.standardError = try FileHandle(forWritingTo: stderrURL)
        try process.run()
        let deadline = Date().addingTimeInterval(30)
        var ports: (Int, Int)?
        while ports == nil && Date() < deadline && process.isRunning {
            let text = (try? String(contentsOf: stdoutURL, encoding: .utf8)) ?? ""
            if let data = Self.port(after: "Data plane: http://", in: text),
                let admin = Self.port(after: "Control plane: http://", in: text)
            {
                ports = (data, admin)
            } else {
                usleep(20_000)
            }
        }
        guard let ports else {
            process.terminate()
            throw ServerProcessError.didNotStart(stderr: (try? String(contentsOf: stderrURL, encoding: .utf8)) ?? "")
        }
        (port, adminPort) = ports
    }

    static func port(after marker: String, in text: String) -> Int? {
        guard let range = text.range(of: marker) else { return nil }
        let line = text[range.upperBound...].prefix { $0 != "\n" }
        return line.split(separator: ":").last.flatMap { Int($0) }
    }

    public var stdout: String { (try? String(contentsOf: stdoutURL, encoding: .utf8)) ?? "" }
    public var stderr: String { (try? String(contentsOf: stderrURL, encoding: .utf8)) ?? "" }

    /// Sends `signal` and waits for the process to exit; returns its status.
    @discardableResult
    public func stop(signal: Int32 = SIGTERM) -> Int32 {
        if process.isRunning { kill(process.processIdentifier, signal) }
        process.waitUntilExit()
        return process.terminationStatus
    }

    deinit {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    }
}

public enum ServerProcessError: Error {
    case didNotStart(stderr: String)
}
