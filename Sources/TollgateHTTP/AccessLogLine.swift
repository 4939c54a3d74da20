import NIOHTTP1
import TollgateCore

/// One data-plane request as the access log records it. It holds no secret by
/// construction: the key appears only as its public id, and the path without its query.
public struct AccessLogRecord: Sendable {
    public var time: Timestamp
    public var keyID: KeyID?
    /// The route's API name; `nil` when no route matched.
    public var api: String?
    public var method: HTTPMethod?
    /// The request target as received; only its path is ever written.
    public var uri: String?
    public var status: UInt
    public var outcome: RequestOutcome
    /// From the request head to the answer being written.
    public var nanoseconds: Int64
}

/// The two line formats of the access log, rendered on the log's own thread.
public enum AccessLogFormat: String, Sendable, CaseIterable {
    /// `TIME KEY API METHOD PATH STATUS OUTCOME MILLISECONDS`, `-` for what is unknown.
    case text
    /// One JSON object a line: `time`, `key`, `api`, `method`, `path`, `status`, `outcome`, `ms`.
    case json
}

/// Renders records into bytes, straight into the batch's buffer: the log's thread shares
/// the machine's cores with the event loops, so a line costs no intermediate strings, and
/// the date part of the time is formatted once per second.
struct AccessLogRenderer {
    let format: AccessLogFormat
    private var second = Int64.min
    /// `2026-11-29T08:00:00.` for `second`.
    private var secondPrefix: [UInt8] = []

    init(format: AccessLogFormat) {
        self.format = format
    }

    /// The longest path written; longer ones are cut and end in `...`.
    static let maximumPathBytes = 1024

    mutating func render(_ record: AccessLogRecord, into buffer: inout [UInt8]) {
        let json = format == .json
        // Every value is ASCII without quotes or backslashes (see `appendEscaped`), so no
        // JSON escaping is needed.
        buffer.append(contentsOf: json ? #"{"time":""#.utf8 : "".utf8)
        appendTime(record.time, to: &buffer)
        field(json ? #"","key":"# : " ", record.keyID?.rawValue, json: json, into: &buffer)
        field(json ? #","api":"# : " ", record.api, json: json, into: &buffer)
        buffer.append(contentsOf: (json ? #","method":"# : " ").utf8)
        if let method = record.method {
            if json { buffer.append(UInt8(ascii: "\"")) }
            Self.appendEscaped(method.rawValue, limit: 32, to: &buffer)
            if json { buffer.append(UInt8(ascii: "\"")) }
        } else {
            buffer.append(contentsOf: (json ? "null" : "-").utf8)
        }
        buffer.append(contentsOf: (json ? #","path":"# : " ").utf8)
        if let uri = record.uri {
            if json { buffer.append(UInt8(ascii: "\"")) }
            Self.appendEscaped(Self.path(of: uri), limit: Self.maximumPathBytes, to: &buffer)
            if json { buffer.append(UInt8(ascii: "\"")) }
        } else {
            buffer.append(contentsOf: (json ? "null" : "-").utf8)
        }
        buffer.append(contentsOf: (json ? #","status":"# : " ").utf8)
        Self.appendDigits(Int64(record.status), to: &buffer)
        buffer.append(contentsOf: (json ? #","outcome":""# : " ").utf8)
        buffer.append(contentsOf: record.outcome.name.utf8)
        buffer.append(contentsOf: (json ? #"","ms":"# : " ").utf8)
        Self.appendMilliseconds(record.nanoseconds, to: &buffer)
        if json { buffer.append(UInt8(ascii: "}")) }
        buffer.append(UInt8(ascii: "\n"))
    }

    private func field(_ separator: String, _ value: String?, json: Bool, into buffer: inout [UInt8]) {
        buffer.append(contentsOf: separator.utf8)
        guard let value else { return buffer.append(contentsOf: (json ? "null" : "-").utf8) }
        if json { buffer.append(UInt8(ascii: "\"")) }
        // Escaped too: a key id imported from an older system may hold a quote or a space.
        Self.appendEscaped(value, limit: 256, to: &buffer)
        if json { buffer.append(UInt8(ascii: "\"")) }
    }

    /// RFC 3339 in UTC, always with milliseconds, so that lines line up and sort as text.
    private mutating func appendTime(_ time: Timestamp, to buffer: inout [UInt8]) {
        let seconds = time.secondsSinceEpoch
        if seconds != second {
            second = seconds
            // `iso8601` leaves out a zero fraction: the whole second has none.
            secondPrefix = Array(Timestamp(secondsSinceEpoch: seconds).iso8601.utf8.dropLast())
            secondPrefix.append(UInt8(ascii: "."))
        }
        buffer.append(contentsOf: secondPrefix)
        let millis = time.millisecondsSinceEpoch - seconds * 1000
        Self.appendPadded(millis, width: 3, to: &buffer)
        buffer.append(UInt8(ascii: "Z"))
    }

    /// The request target up to its query or fragment: a query may hold a key. An absolute
    /// target (`http://user:secret@host/api1`) loses its scheme and authority, which may hold
    /// credentials.
    static func path(of uri: String) -> Substring {
        let end = uri.utf8.firstIndex { $0 == UInt8(ascii: "?") || $0 == UInt8(ascii: "#") } ?? uri.endIndex
        var target = uri[..<end]
        if !target.hasPrefix("/"), let scheme = target.firstRange(of: "://") {
            let authority = target[scheme.upperBound...]
            target = authority.firstIndex(of: "/").map { authority[$0...] } ?? "/"
        }
        return target
    }

    /// Bytes outside visible ASCII, quotes and backslashes as `%XX`, so that a line stays
    /// one line, its fields stay apart, and JSON needs no escaping; cut at `limit` bytes.
    static func appendEscaped(_ text: some StringProtocol, limit: Int, to buffer: inout [UInt8]) {
        var written = 0
        for byte in text.utf8 {
            if written >= limit {
                buffer.append(contentsOf: "...".utf8)
                return
            }
            if byte > 0x20 && byte < 0x7F && byte != UInt8(ascii: "\"") && byte != UInt8(ascii: "\\") {
                buffer.append(byte)
                written += 1
            } else {
                buffer.append(UInt8(ascii: "%"))
                buffer.append(hexDigits[Int(byte >> 4)])
                buffer.append(hexDigits[Int(byte & 0xF)])
                written += 3
            }
        }
    }

    private static let hexDigits = Array("0123456789ABCDEF".utf8)

    /// Milliseconds with three decimals (microseconds), e.g. `0.412`.
    static func appendMilliseconds(_ nanoseconds: Int64, to buffer: inout [UInt8]) {
        let micros = max(0, nanoseconds) / 1000
        appendDigits(micros / 1000, to: &buffer)
        buffer.append(UInt8(ascii: "."))
        appendPadded(micros % 1000, width: 3, to: &buffer)
    }

    static func appendDigits(_ value: Int64, to buffer: inout [UInt8]) {
        var digits = 1
        var rest = value / 10
        while rest > 0 {
            digits += 1
            rest /= 10
        }
        appendPadded(value, width: digits, to: &buffer)
    }

    /// `value` (non-negative) in at least `width` digits, zeros in front.
    static func appendPadded(_ value: Int64, width: Int, to buffer: inout [UInt8]) {
        let start = buffer.count
        var value = value
        for _ in 0..<width {
            buffer.append(UInt8(ascii: "0") + UInt8(value % 10))
            value /= 10
        }
        buffer[start...].reverse()
    }
}
