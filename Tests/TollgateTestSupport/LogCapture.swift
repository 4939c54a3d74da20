import Logging
import Synchronization

/// Log lines captured in memory, so that tests can check what is logged (and that no
/// secret is among it, even at `trace`) without bootstrapping logging.
///
/// A line is the level, the message and the metadata as `key=value`, sorted by key.
public final class LogCapture: Sendable {
    private let lines = Mutex<[String]>([])

    public init() {}

    public var all: [String] { lines.withLock { $0 } }
    public var text: String { all.joined(separator: "\n") }

    /// A logger at `trace` whose every line lands here.
    public var logger: Logger {
        Logger(label: "tollgate.test.capture", factory: { _ in CapturingHandler(capture: self) })
    }

    fileprivate func append(_ line: String) { lines.withLock { $0.append(line) } }
}

private struct CapturingHandler: LogHandler {
    let capture: LogCapture
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let merged = metadata.merging(event.metadata ?? [:]) { $1 }
        let fields = merged.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        capture.append("\(event.level) \(event.message) \(fields)")
    }
}
