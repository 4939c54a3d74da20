import ArgumentParser
import TollgateCore

extension Keys {
    /// `tollgate keys update ID`: the CLI's `PATCH /admin/v1/keys/{id}`.
    struct Update: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Change a key's name, scopes, limits or expiry; what is not given is kept.",
            discussion: """
                --scope and --limit replace all of the key's scopes or limits; limits with the same \
                pattern and period keep what was used. --unlimited removes every limit, --expires never \
                the expiry. A running server on the same store takes the change within a second.
                """
        )
        @Argument(help: "The key's id.") var id: String
        @Option(help: "A new name.") var name: String?
        @Option(name: .customLong("scope"), help: "The key's API patterns, replacing the old ones (repeatable).") var scopes: [String] = []
        @Option(name: .customLong("limit"), help: "The key's quotas, replacing the old ones (repeatable).") var limits: [String] = []
        @Flag(help: "Remove every limit.") var unlimited = false
        @Option(help: "A new expiry (a span, a date or an RFC 3339 time), or 'never'.") var expires: String?
        @Flag(help: "Print one JSON object.") var json = false
        @OptionGroup var storeOptions: KeyStoreOptions
        @OptionGroup var routeOptions: RouteOptions

        func validate() throws {
            if unlimited && !limits.isEmpty { throw ValidationError("give --limit or --unlimited, not both") }
            if name == nil && scopes.isEmpty && limits.isEmpty && !unlimited && expires == nil {
                throw ValidationError("nothing to change: give --name, --scope, --limit, --unlimited or --expires")
            }
        }

        func run() async throws {
            try await reportingErrors {
                let now = SystemWallClock().now
                let apis = try routeOptions.servedAPIs()
                // Everything is parsed before the store is opened: nothing half-applied.
                let newScopes = try scopes.map { text throws(TollgateError) in try ScopePattern(parsing: text) }
                let newLimits = try limits.map { text throws(TollgateError) in try LimitSpec(parsing: text) }
                let newExpiry: Timestamp?? = try expires.map { text throws(TollgateError) -> Timestamp? in
                    text == "never" ? nil : try Timestamp(parsing: text, now: now)
                }
                try KeyIssuer.validate(
                    KeyDraft(name: name ?? "", scopes: newScopes, limits: newLimits, expiresAt: newExpiry ?? nil), now: now)
                // Only the fields given are written, in one step at the store: an edit of other
                // fields racing from a server or another command is kept.
                let edit = KeyEdit(
                    name: name,
                    scopes: scopes.isEmpty ? nil : newScopes,
                    limits: limits.isEmpty && !unlimited ? nil : newLimits,
                    expiry: newExpiry.map(KeyEdit.Expiry.init)
                )
                let key = try await withStore(storeOptions, .existing) { store throws(TollgateError) -> APIKey in
                    guard let key = try await store.editKey(id: KeyID(rawValue: id), edit) else { throw noKey(id) }
                    return key
                }
                if !scopes.isEmpty || !limits.isEmpty {
                    for warning in KeyAdvice.warnings(scopes: key.scopes, limits: key.limits, apis: apis) {
                        printError("warning: \(warning)")
                    }
                }
                let report = KeyReport(key, now: now)
                if json { return try printJSON(report) }
                // Everything the key now is, the name too: the edit may have raced another.
                print(
                    "Updated \(key.id): name \(report.name.isEmpty ? "(none)" : "'\(report.name)'"), scopes \(scopesText(report.scopes)), limits \(limitsText(report.limits)), expires \(report.expiresAt ?? "never")."
                )
                if report.status != "active" {
                    print("The key is \(report.status), so it stays refused: the update changes its record, not that.")
                }
            }
        }
    }
}
