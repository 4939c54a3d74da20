import Foundation
import NIOCore
import TollgateCore

/// Every key's usage, per API and per limit, written a page of keys at a time for billing
/// exports: `GET /admin/v1/usage` and `tollgate usage --format` share it.
///
/// Pages are read one after another, not as one snapshot: a key changed during an export
/// appears as it was when its page was read.
public enum UsageExport {
    public enum Format: String, Sendable, CaseIterable {
        /// One JSON array of the objects `tollgate usage ID --json` prints.
        case json
        /// One such object a line.
        case ndjson
        /// One row per key and API, and per key and limit; see ``csvHeader``.
        case csv

        public var contentType: String {
            switch self {
            case .json: "application/json"
            case .ndjson: "application/x-ndjson"
            case .csv: "text/csv; charset=utf-8"
            }
        }
    }

    /// Keys read from the store at a time.
    public static let pageSize = 500

    /// Writes the export of `store` to `sink`, one chunk per page of keys. `firstPage`, if
    /// given, is the page already read (so that a failing store is found before an answer
    /// has begun).
    public static func write(
        store: some KeyStore,
        format: Format,
        now: Timestamp,
        firstPage: [KeyUsage]? = nil,
        pageSize: Int = pageSize,
        to sink: (ByteBuffer) async throws -> Void
    ) async throws {
        var buffer = ByteBuffer()
        switch format {
        case .json: buffer.writeString("[")
        case .csv: buffer.writeString(csvHeader + "\r\n")
        case .ndjson: break
        }
        var page: [KeyUsage]
        if let firstPage {
            page = firstPage
        } else {
            page = try await store.usagePage(after: nil, limit: pageSize)
        }
        var first = true
        while true {
            for entry in page {
                let report = UsageReport(key: entry.key, usage: entry.usage, now: now)
                switch format {
                case .json:
                    buffer.writeString(first ? "\n" : ",\n")
                    buffer.writeImmutableBuffer(encodeJSON(report))
                case .ndjson:
                    buffer.writeImmutableBuffer(encodeJSON(report))
                    buffer.writeString("\n")
                case .csv:
                    for row in csvRows(report) { buffer.writeString(row + "\r\n") }
                }
                first = false
            }
            if page.count < pageSize || page.isEmpty { break }
            try await sink(buffer)
            buffer.clear()
            page = try await store.usagePage(after: page.last?.key.id, limit: pageSize)
        }
        if format == .json { buffer.writeString(first ? "]\n" : "\n]\n") }
        try await sink(buffer)
    }

    // MARK: CSV

    /// The CSV columns: a `kind` of `api` fills the API's counts, `limit` the limit's state,
    /// and a key with neither gets one `key` row so that every key appears.
    public static let csvHeader =
        "key_id,name,kind,api,admitted,denied,scope_denied,quota_exceeded,key_revoked,key_expired,scope,limit,period,used,remaining,resets_at"

    static func csvRows(_ report: UsageReport) -> [String] {
        let key = [csvField(report.id.rawValue), csvField(report.name)]
        var rows: [[String]] = []
        for (api, counts) in report.apis.sorted(by: { $0.key < $1.key }) {
            let reasons = ["scope_denied", "quota_exceeded", "key_revoked", "key_expired"].map {
                String(counts.deniedByReason[$0] ?? 0)
            }
            rows.append(key + ["api", csvField(api), String(counts.admitted), String(counts.denied)] + reasons + ["", "", "", "", "", ""])
        }
        for limit in report.limits {
            rows.append(
                key + ["limit", "", "", "", "", "", "", ""]
                    + [
                        csvField(limit.scope), String(limit.limit), limit.period.rawValue, String(limit.used), String(limit.remaining),
                        limit.resetsAt ?? "",
                    ])
        }
        if rows.isEmpty { rows.append(key + ["key"] + Array(repeating: "", count: 13)) }
        return rows.map { $0.joined(separator: ",") }
    }

    /// A CSV field (RFC 4180), quoted when it holds a separator or quote. Text a spreadsheet
    /// would run as a formula (`=`, `+`, `-`, `@` first) gets a leading `'`: names come from
    /// operators, and exports are opened in spreadsheets.
    static func csvField(_ text: String) -> String {
        var text = text
        if let first = text.first, "=+-@\t\r".contains(first) { text = "'" + text }
        guard text.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) else { return text }
        return "\"" + text.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }
}
