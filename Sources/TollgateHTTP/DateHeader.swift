import TollgateCore

/// The `Date` field every response carries (RFC 9110 requires it of a server with a clock),
/// formatted once per second per connection rather than once per response.
///
/// Each connection keeps its own copy, so answering takes no lock shared across event loops.
struct DateHeader {
    private var second = Int64.min
    private var text = ""

    mutating func value(at now: Timestamp) -> String {
        let current = now.secondsSinceEpoch
        if current != second {
            second = current
            text = now.httpDate
        }
        return text
    }
}
