import ArgumentParser
import Foundation
import NIOCore
import TollgateCore
import TollgateHTTP

/// `tollgate keys …`: create, list, show, revoke and import keys.
struct Keys: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create, list, show, update, rotate, revoke and import API keys.",
        subcommands: [Create.self, List.self, Show.self, Update.self, Rotate.self, Revoke.self, Import.self]
    )
}

extension Keys {
    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create a key and print its secret, once.",
            discussion: """
                Scope patterns: '*' every API; '/' the root; 'api1' exactly /api1; 'api1*' /api1 and \
                everything below it (/api1/x, never /api10); 'api1/' everything below /api1. A key with no \
                --scope reaches nothing.

                Limits: N/PERIOD for every API the key reaches, PATTERN:N/PERIOD for the APIs PATTERN \
                matches; PERIOD is total, second, minute, hour, day or month (UTC windows).

                A secret given with --key is visible to other users in the process list while the \
                command runs; 'tollgate keys import -' reads secrets from standard input instead.
                """
        )

        @Option(help: "A name to recognize the key by.") var name = ""
        @Option(name: .customLong("scope"), help: "An API pattern the key may reach (repeatable).") var scopes: [String] = []
        @Option(name: .customLong("limit"), help: "A quota, N/PERIOD or PATTERN:N/PERIOD (repeatable).") var limits: [String] = []
        @Option(
            help:
                "When the key stops working: a span from now (90s, 15m, 12h, 30d, 4w), a date (2030-01-01, midnight UTC) or an RFC 3339 time (2030-01-01T12:00:00+02:00), up to 9999-12-31."
        ) var expires: String?
        @Option(name: .customLong("key"), help: "Use this secret instead of generating one (e.g. when migrating).") var secret: String?
        @Flag(help: "Print one JSON object.") var json = false
        @OptionGroup var storeOptions: KeyStoreOptions
        @OptionGroup var routeOptions: RouteOptions

        func run() async throws {
            try await reportingErrors {
                let now = SystemWallClock().now
                let apis = try routeOptions.servedAPIs()
                let draft = KeyDraft(
                    name: name,
                    scopes: try scopes.map { text throws(TollgateError) in try ScopePattern(parsing: text) },
                    limits: try limits.map { text throws(TollgateError) in try LimitSpec(parsing: text) },
                    expiresAt: try expires.map { text throws(TollgateError) in try Timestamp(parsing: text, now: now) }
                )
                let (key, secret) = try KeyIssuer.issue(draft, secret: self.secret, now: now)
                try await withStore(storeOptions, .create) { store in try await store.createKey(key) }
                for warning in KeyAdvice.warnings(scopes: key.scopes, limits: key.limits, apis: apis) {
                    printError("warning: \(warning)")
                }
                if json {
                    try printJSON(CreatedKey(report: KeyReport(key, now: now), key: secret))
                } else {
                    print("Created \(key.id)\(key.name.isEmpty ? "" : " (\(key.name))").")
                    print("Its secret, shown this once:")
                    print("  \(secret)")
                }
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List keys (never their secrets).")
        @Flag(help: "Print one JSON array.") var json = false
        @OptionGroup var storeOptions: KeyStoreOptions

        func run() async throws {
            try await reportingErrors {
                let now = SystemWallClock().now
                let keys = try await withStore(storeOptions, .existing) { store in try await store.allKeys() }
                let reports = keys.map { KeyReport($0, now: now) }
                if json { return try printJSON(reports) }
                printTable(
                    ["ID", "STATUS", "NAME", "SCOPES", "LIMITS", "EXPIRES"],
                    reports.map { report in
                        [
                            report.id.rawValue, report.status, report.name, scopesText(report.scopes), limitsText(report.limits),
                            report.expiresAt ?? "never",
                        ]
                    }
                )
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show one key (never its secret).")
        @Argument(help: "The key's id.") var id: String
        @Flag(help: "Print one JSON object.") var json = false
        @OptionGroup var storeOptions: KeyStoreOptions

        func run() async throws {
            try await reportingErrors {
                let now = SystemWallClock().now
                guard let key = try await withStore(storeOptions, .existing, { store in try await store.key(id: KeyID(rawValue: id)) })
                else {
                    throw noKey(id)
                }
                let report = KeyReport(key, now: now)
                if json { return try printJSON(report) }
                print("id:       \(report.id)")
                print("name:     \(report.name)")
                print("status:   \(report.status)")
                print("scopes:   \(scopesText(report.scopes))")
                print("limits:   \(limitsText(report.limits))")
                print("created:  \(report.createdAt)")
                if let expires = report.expiresAt { print("expires:  \(expires)") }
                if let revoked = report.revokedAt { print("revoked:  \(revoked)") }
            }
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Revoke a key: a running server refuses it within a second."
        )
        @Argument(help: "The key's id.") var id: String
        @OptionGroup var storeOptions: KeyStoreOptions

        func run() async throws {
            try await reportingErrors {
                let now = SystemWallClock().now
                guard
                    let key = try await withStore(
                        storeOptions, .existing, { store in try await store.revokeKey(id: KeyID(rawValue: id), at: now) })
                else {
                    throw noKey(id)
                }
                print("Revoked \(key.id) at \(key.revokedAt ?? now).")
            }
        }
    }

    struct Import: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Import keys from NDJSON, one key a line.",
            discussion: """
                Each line: {"key": SECRET} or {"digest": SHA256-HEX}, with "scopes": [..], and optionally \
                "id", "name", "limits": [..] and "expires_at".

                Ids are 1 to 64 letters, digits, '_', '.' or '-', starting with a letter or digit. Every \
                line is checked before any key is stored, and an id or key that appears on two lines is \
                an error naming both, as is a member no key has or one given twice; keys whose secret or \
                id the store already has are skipped, so an import can be run again. Limits that can \
                never apply are warned about, by line (with --config, also scopes and limits that reach \
                none of the file's routes).
                """
        )
        @Argument(help: "The NDJSON file, or - for standard input.") var file: String
        @OptionGroup var storeOptions: KeyStoreOptions
        @OptionGroup var routeOptions: RouteOptions

        func run() async throws {
            try await reportingErrors {
                let now = SystemWallClock().now
                let apis = try routeOptions.servedAPIs()
                let input = try ImportFile(path: file)
                // Every line is checked before the store is opened; then the file is read
                // again, a chunk at a time, into the store's one transaction.
                let report = try KeyImporter.check(input, now: now, apis: apis)
                let batches = KeyImporter.Batches(input, now: now, expectedKeys: report.keys)
                // Redis's replies to a pipelined import queue behind each other: the usual
                // 2 s command timeout could pass under load.
                let inserted = try await withStore(storeOptions, .create, redisCommandTimeout: .seconds(10)) { store in
                    try await store.importKeys(batches)
                }
                for warning in report.warnings { printError("warning: \(warning)") }
                if report.warningLines > report.warnings.count {
                    printError("warning: \(report.warningLines - report.warnings.count) more lines have warnings, not shown")
                }
                print("Imported \(inserted) keys; skipped \(report.keys - inserted) that the store already had.")
            }
        }
    }
}

/// The error for an id no key has, quoting at most a short excerpt of what was typed.
func noKey(_ id: String) -> TollgateError {
    TollgateError(.keyNotFound, "no key has id \(TollgateError.quote(id)): 'tollgate keys list' shows the ids")
}

/// A key's scopes as listings print them; a key without scopes reaches "nothing".
func scopesText(_ scopes: [ScopePattern]) -> String {
    scopes.isEmpty ? "nothing" : scopes.map(\.description).joined(separator: ", ")
}

/// A key's limits as listings print them; a key without limits is "unlimited".
func limitsText(_ limits: [LimitSpec]) -> String {
    limits.isEmpty ? "unlimited" : limits.map(\.description).joined(separator: ", ")
}
