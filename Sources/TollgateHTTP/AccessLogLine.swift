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

    /// The longest path written; longer ones are cut and end in `...`.
    static let maximumPathBytes = 1024

    func render(_ record: AccessLogRecord, into buffer: inout [UInt8]) {
        // Always with milliseconds, so that lines line up and sort as text.
        let time = record.time.millisecondsSinceEpoch % 1000 == 0 ? String(record.time.iso8601.dropLast()) + ".000Z" : record.time.iso8601
        let key = record.keyID?.rawValue
        let method = record.method.map { Self.escaped($0.rawValue, limit: 32) }
        let path = record.uri.map { Self.escaped(Self.path(of: $0), limit: Self.maximumPathBytes) }
        let milliseconds = Self.milliseconds(record.nanoseconds)
        switch self {
        case .text:
            let fields: [String] = [
                time, key ?? "-", record.api ?? "-", method ?? "-", path ?? "-", String(record.status), record.outcome.name,
                milliseconds,
            ]
            buffer.append(contentsOf: fields.joined(separator: " ").utf8)
        case .json:
            // Every value is ASCII without quotes or backslashes (see `escaped`), so no
            // JSON escaping is needed.
            func string(_ value: String?) -> String { value.map { "\"\($0)\"" } ?? "null" }
            let line =
                "{\"time\":\"\(time)\",\"key\":\(string(key)),\"api\":\(string(record.api)),\"method\":\(string(method)),"
                + "\"path\":\(string(path)),\"status\":\(record.status),\"outcome\":\"\(record.outcome.name)\",\"ms\":\(milliseconds)}"
            buffer.append(contentsOf: line.utf8)
        }
        buffer.append(UInt8(ascii: "\n"))
    }

    /// The request target up to its query or fragment: a query may hold a key.
    static func path(of uri: String) -> Substring {
        let end = uri.utf8.firstIndex { $0 == UInt8(ascii: "?") || $0 == UInt8(ascii: "#") } ?? uri.endIndex
        return uri[..<end]
    }

    /// Bytes outside visible ASCII, quotes and backslashes as `%XX`, so that a line stays
    /// one line, its fields stay apart, and JSON needs no escaping; cut at `limit` bytes.
    static func escaped(_ text: some StringProtocol, limit: Int) -> String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(min(text.utf8.count, limit) + 3)
        for byte in text.utf8 {
            if bytes.count >= limit {
                bytes.append(contentsOf: "...".utf8)
                break
            }
            if byte > 0x20 && byte < 0x7F && byte != UInt8(ascii: "\"") && byte != UInt8(ascii: "\\") {
                bytes.append(byte)
            } else {
                bytes.append(contentsOf: [UInt8(ascii: "%"), hexDigits[Int(byte >> 4)], hexDigits[Int(byte & 0xF)]])
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    private static let hexDigits = Array("0123456789ABCDEF".utf8)

    /// Milliseconds with three decimals (microseconds), e.g. `0.412`.
    static func milliseconds(_ nanoseconds: Int64) -> String {
        let micros = max(0, nanoseconds) / 1000
        let fraction = String(micros % 1000)
        return "\(micros / 1000)." + String(repeating: "0", count: 3 - fraction.count) + fraction
    }
}
