import ArgumentParser
import Foundation
import NIOCore
import TollgateAdmin
import TollgateCore

/// `tollgate usage`: what each key used (the default `show`), and `reset`.
struct Usage: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show, export or reset usage per key and per API.",
        subcommands: [Show.self, Reset.self],
        defaultSubcommand: Show.self
    )
}

extension Usage {
    /// `tollgate usage [show] [ID] [--json | --format csv|ndjson]`.
    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show usage per key and per API: admitted, denied by reason, and each limit's state (the default).",
            discussion: "--format csv or ndjson exports every key, written a page of keys at a time, as GET /admin/v1/usage does."
        )
        @Argument(help: "One key's id; all keys when left out.") var id: String?
        @Flag(help: "Print JSON: one object for an id, else an array.") var json = false
        @Option(help: "Export every key's usage as csv or ndjson (or json), streamed.") var format: String?
        @OptionGroup var storeOptions: KeyStoreOptions

        func validate() throws {
            if let format {
                guard UsageExport.Format(rawValue: format) != nil else {
                    throw ValidationError("--format must be csv, ndjson or json")
                }
                if json { throw ValidationError("give --json or --format, not both") }
                if id != nil { throw ValidationError("--format exports every key: leave out the id, or use --json for one key") }
            }
        }

        func run() async throws {
            if let format = format.flatMap(UsageExport.Format.init(rawValue:)) {
                return try await export(format)
            }
            try await reportingErrors {
                let now = SystemWallClock().now
                let reports = try await withStore(storeOptions, .existing) { store throws(TollgateError) -> [UsageReport] in
                    let keys: [APIKey]
                    if let id {
                        guard let key = try await store.key(id: KeyID(rawValue: id)) else {
                            throw noKey(id)
                        }
                        keys = [key]
                    } else {
                        keys = try await store.allKeys()
                    }
                    var reports: [UsageReport] = []
                    for key in keys {
                        reports.append(UsageReport(key: key, usage: try await store.usage(id: key.id), now: now))
                    }
                    return reports
                }
                if json {
                    if id != nil { return try printJSON(reports[0]) }
                    return try printJSON(reports)
                }
                for report in reports {
                    let state = report.status == "active" ? "" : "  [\(report.status): every request is refused]"
                    print("\(report.id)\(report.name.isEmpty ? "" : "  \(report.name)")\(state)")
                    for (api, usage) in report.apis.sorted(by: { $0.key < $1.key }) {
                        let reasons = usage.deniedByReason.filter { $0.value > 0 }.sorted { $0.key < $1.key }
                            .map { "\($0.key) \($0.value)" }.joined(separator: ", ")
                        print("  \(api): \(usage.admitted) admitted, \(usage.denied) denied\(reasons.isEmpty ? "" : " (\(reasons))")")
                    }
                    if report.limits.isEmpty { print("  unlimited (the key has no limits)") }
                    for limit in report.limits {
                        let scope = limit.scope == "*" ? "" : "\(limit.scope):"
                        let reset = limit.resetsAt.map { "resets \($0)" } ?? "never resets"
                        // What a revoked or expired key has "left" serves nothing.
                        let left = report.status == "active" ? "\(limit.remaining) left, \(reset)" : "none served (\(report.status))"
                        print("  \(scope)\(limit.limit)/\(limit.period.rawValue): \(limit.used) used, \(left)")
                    }
                }
            }
        }

        private func export(_ format: UsageExport.Format) async throws {
            try await reportingErrors {
                let now = SystemWallClock().now
                try await withStore(storeOptions, .existing) { store in
                    try await UsageExport.write(store: store, format: format, now: now) { buffer in
                        FileHandle.standardOutput.write(Data(buffer.readableBytesView))
                    }
                }
            }
        }
    }

    /// `tollgate usage reset ID`.
    struct Reset: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Start a key's counters again from zero: every limit has its full quota.",
            discussion: "For a billing dispute or a mistaken quota. A running server on the same store takes it at once (SQLite, Redis)."
        )
        @Argument(help: "The key's id.") var id: String
        @OptionGroup var storeOptions: KeyStoreOptions

        func run() async throws {
            try await reportingErrors {
                let key = try await withStore(storeOptions, .existing) { store throws(TollgateError) -> APIKey in
                    guard let key = try await store.key(id: KeyID(rawValue: id)) else { throw noKey(id) }
                    try await store.resetUsage(id: key.id)
                    return key
                }
                let status = KeyReport.status(of: key, at: SystemWallClock().now)
                if status == "active" {
                    print("Reset the usage of \(key.id): every limit has its full quota again.")
                } else {
                    // Counts start from zero, but a revoked or expired key is still refused.
                    print("Reset the usage of \(key.id); the key is \(status), so it stays refused.")
                }
            }
        }
    }
}
