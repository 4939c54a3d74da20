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
    /// has begun). With `lane`, pages are read and encoded in it (see ``ExportLane``).
    public static func write(
        store: some KeyStore,
        format: Format,
        now: Timestamp,
        firstPage: [KeyUsage]? = nil,
        pageSize: Int = pageSize,
        lane: ExportLane? = nil,
        to sink: (ByteBuffer) async throws -> Void
    ) async throws {
        var page: [KeyUsage]
        if let firstPage {
            page = firstPage
        } else {
            page = try await readPage(store, after: nil, limit: pageSize, lane: lane)
        }
        var isFirst = true
        while true {
            let last = page.count < pageSize || page.isEmpty
            let entries = page
            let first = isFirst
            let chunk =
                try await lane?.encode { encode(entries, format: format, now: now, first: first, last: last) }
                ?? encode(entries, format: format, now: now, first: first, last: last)
            try await sink(chunk)
            if last { return }
            isFirst = false
            page = try await readPage(store, after: page.last?.key.id, limit: pageSize, lane: lane)
        }
    }

    /// A page of keys and their usage, read in `lane` if there is one.
    static func readPage(_ store: some KeyStore, after: KeyID?, limit: Int, lane: ExportLane?) async throws -> [KeyUsage] {
        guard let lane else { return try await store.usagePage(after: after, limit: limit) }
        return try await lane.read { try await store.usagePage(after: after, limit: limit) }
    }

    /// One page of the export: with the format's opening on the first page, its closing on
    /// the last.
    static func encode(_ page: [KeyUsage], format: Format, now: Timestamp, first: Bool, last: Bool) -> ByteBuffer {
        var buffer = ByteBuffer()
        if first {
            switch format {
            case .json: buffer.writeString("[")
            case .csv: buffer.writeString(csvHeader + "\r\n")
            case .ndjson: break
            }
        }
        for (index, entry) in page.enumerated() {
            let report = UsageReport(key: entry.key, usage: entry.usage, now: now)
            switch format {
            case .json:
                buffer.writeString(first && index == 0 ? "\n" : ",\n")
                buffer.writeImmutableBuffer(encodeJSON(report))
            case .ndjson:
                buffer.writeImmutableBuffer(encodeJSON(report))
                buffer.writeString("\n")
            case .csv:
                for row in csvRows(report) { buffer.writeString(row + "\r\n") }
            }
        }
        if last && format == .json { buffer.writeString(first && page.isEmpty ? "]\n" : "\n]\n") }
        return buffer
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
