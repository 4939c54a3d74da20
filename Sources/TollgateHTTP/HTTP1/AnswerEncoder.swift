import NIOCore
import NIOHTTP1
import TollgateCore

/// Writing answers from bytes made once: each refusal and fixed answer is a prebuilt status
/// line, fixed fields and body; an answer fills in only its date, RateLimit values, length
/// and `Connection`, straight into the connection's outbound buffer.
///
/// Field names are written in lower case, as HTTP/2 and /3 require and HTTP/1.1 permits.
enum AnswerEncoder {
    /// `HTTP/1.1 CODE REASON\r\n` for `status`.
    static func statusLine(_ status: HTTPResponseStatus) -> String {
        "HTTP/1.1 \(status.code) \(status.reasonPhrase)\r\n"
    }

    /// Writes the end of a head the gateway made, and its body: `content-length`, `date`,
    /// `cache-control` (`private, no-store` when `metered`: the answer is about a key),
    /// `connection` as `connection` says, the blank line, and `body` unless `isHead`.
    static func finish(
        _ out: inout ByteBuffer, body: ByteBuffer, date: ByteBuffer, metered: Bool, connection: ConnectionField, isHead: Bool
    ) {
        out.writeStaticString("content-length: ")
        out.writeDecimal(Int64(body.readableBytes))
        out.writeStaticString("\r\n")
        out.writeImmutableBuffer(date)
        // A shared cache must never store an answer: it would serve it to other callers
        // without their key and without counting it.
        out.writeStaticString(metered ? "cache-control: private, no-store\r\n" : "cache-control: no-store\r\n")
        out.writeStaticString(connection.line)
        out.writeStaticString("\r\n")
        if !isHead { out.writeImmutableBuffer(body) }
    }

    /// The fields of draft-ietf-httpapi-ratelimit-headers-10, one list item per limit.
    static func writeRateLimitFields(_ limits: [LimitStatus], to out: inout ByteBuffer) {
        guard !limits.isEmpty else { return }
        out.writeStaticString("ratelimit-policy: ")
        for (index, limit) in limits.enumerated() {
            if index > 0 { out.writeStaticString(", ") }
            out.writeStaticString("\"")
            out.writeString(limit.policy)
            out.writeStaticString("\";q=")
            out.writeDecimal(limit.quota)
            if let window = limit.windowSeconds {
                out.writeStaticString(";w=")
                out.writeDecimal(window)
            }
        }
        out.writeStaticString("\r\nratelimit: ")
        for (index, limit) in limits.enumerated() {
            if index > 0 { out.writeStaticString(", ") }
            out.writeStaticString("\"")
            out.writeString(limit.policy)
            out.writeStaticString("\";r=")
            out.writeDecimal(limit.remaining)
            if let reset = limit.resetSeconds {
                out.writeStaticString(";t=")
                out.writeDecimal(reset)
            }
        }
        out.writeStaticString("\r\n")
    }
}

/// What an answer says about its connection.
enum ConnectionField {
    /// Nothing: an HTTP/1.1 connection stays open by default.
    case none
    /// `connection: close`: the connection closes after this answer.
    case close
    /// `connection: keep-alive`: an HTTP/1.0 client that asked to keep its connection.
    case keepAlive

    var line: StaticString {
        switch self {
        case .none: ""
        case .close: "connection: close\r\n"
        case .keepAlive: "connection: keep-alive\r\n"
        }
    }
}

extension ByteBuffer {
    /// Writes `value` in decimal, without making a `String`.
    @inline(__always)
    mutating func writeDecimal(_ value: Int64) {
        if value >= 0 && value < 10 {
            writeInteger(UInt8(truncatingIfNeeded: value) &+ 0x30)
            return
        }
        var magnitude = value.magnitude
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 20) { digits in
            var index = 20
            repeat {
                index -= 1
                digits[index] = UInt8(truncatingIfNeeded: magnitude % 10) &+ 0x30
                magnitude /= 10
            } while magnitude > 0
            if value < 0 { writeInteger(UInt8(ascii: "-")) }
            writeBytes(UnsafeRawBufferPointer(rebasing: UnsafeMutableRawBufferPointer(digits)[index...]))
        }
    }
}

/// The `date` field every answer carries (RFC 9110 requires it of a server with a clock), as
/// a whole line, formatted once per second per connection rather than once per answer.
///
/// Each connection keeps its own copy, so answering takes no lock shared across event loops.
struct DateLine {
    private var second = Int64.min
    private(set) var line = ByteBuffer()
    private(set) var text = ""

    /// The line for `now`: `date: Tue, 08 Dec 2026 10:00:00 GMT\r\n`.
    mutating func line(at now: Timestamp) -> ByteBuffer {
        refresh(now)
        return line
    }

    /// The field's value for `now`, for answers built as `HTTPHeaders`.
    mutating func value(at now: Timestamp) -> String {
        refresh(now)
        return text
    }

    private mutating func refresh(_ now: Timestamp) {
        let current = now.secondsSinceEpoch
        guard current != second else { return }
        second = current
        text = now.httpDate
        line = ByteBuffer(string: "date: \(text)\r\n")
    }
}
