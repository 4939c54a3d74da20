import ArgumentParser
import TollgateCore

/// `tollgate usage [ID]`: what each key used, per API and per limit.
struct Usage: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show usage per key and per API: admitted, denied by reason, and each limit's state."
    )
    @Argument(help: "One key's id; all keys when left out.") var id: String?
    @Flag(help: "Print JSON: one object for an id, else an array.") var json = false
    @OptionGroup var storeOptions: KeyStoreOptions

    func run() async throws {
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
                print("\(report.id)\(report.name.isEmpty ? "" : "  \(report.name)")")
                for (api, usage) in report.apis.sorted(by: { $0.key < $1.key }) {
                    let reasons = usage.deniedByReason.filter { $0.value > 0 }.sorted { $0.key < $1.key }
                        .map { "\($0.key) \($0.value)" }.joined(separator: ", ")
                    print("  \(api): \(usage.admitted) admitted, \(usage.denied) denied\(reasons.isEmpty ? "" : " (\(reasons))")")
                }
                if report.limits.isEmpty { print("  unlimited (the key has no limits)") }
                for limit in report.limits {
                    let scope = limit.scope == "*" ? "" : "\(limit.scope):"
                    let reset = limit.resetsAt.map { "resets \($0)" } ?? "never resets"
                    print("  \(scope)\(limit.limit)/\(limit.period.rawValue): \(limit.used) used, \(limit.remaining) left, \(reset)")
                }
            }
        }
    }
}
