import Synchronization
import TollgateCore

/// The `Date` field every response carries (RFC 9110 requires it of a server with a clock),
/// formatted once per second rather than once per response.
final class DateHeader: Sendable {
    private let cached = Mutex<(second: Int64, text: String)>((Int64.min, ""))

    func value(at now: Timestamp) -> String {
        let second = now.secondsSinceEpoch
        return cached.withLock { cached in
            if cached.second != second { cached = (second, now.httpDate) }
            return cached.text
        }
    }
}
