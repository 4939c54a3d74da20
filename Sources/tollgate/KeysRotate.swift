import ArgumentParser
import TollgateAdmin
import TollgateCore

extension Keys {
    /// `tollgate keys rotate ID`: the CLI's `POST /admin/v1/keys/{id}/rotate`.
    struct Rotate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Give a key a new secret and print it, once; the old secret works for the overlap.",
            discussion: """
                The key keeps its id, scopes, limits and usage. The old secret is accepted for --overlap \
                (default 24h; 0s ends it at once), then refused as revoked. A running server on the same \
                store takes the new secret within a second.
                """
        )
        @Argument(help: "The key's id.") var id: String
        @Option(help: "How long the old secret keeps working: 24h, 30m, 7d, 0s (at most 365d).") var overlap = RotationOverlap.defaultText
        @Flag(help: "Print one JSON object.") var json = false
        @OptionGroup var storeOptions: KeyStoreOptions

        func run() async throws {
            try await reportingErrors {
                let seconds = try RotationOverlap.parse(overlap)
                let now = SystemWallClock().now
                let rotated = try await withStore(storeOptions, .existing) { store throws(TollgateError) -> RotatedKey? in
                    try await store.rotate(id: KeyID(rawValue: id), overlapSeconds: seconds, now: now)
                }
                guard let rotated else { throw noKey(id) }
                let key = rotated.key
                let secret = rotated.secret
                let until = key.previousDigestExpiresAt?.iso8601 ?? now.iso8601
                if json {
                    return try printJSON(IssuedKey(report: KeyReport(key, now: now), key: secret, previousKeyExpiresAt: until))
                }
                print("Rotated \(key.id). Its new secret, shown this once:")
                print("  \(secret)")
                print("The old secret works until \(until).")
            }
        }
    }
}
