import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import TollgateTestSupport

@testable import TollgateRESP

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
