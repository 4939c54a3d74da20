import Foundation
import HTTPTypes
import Hummingbird
import TollgateCore

/// The `ETag` of a key's record and the `If-Match` that names it, so that a client edits
/// or revokes only the record it read (optimistic concurrency across callers and instances).
///
/// A tag is the store's version of the record as a strong entity tag (`"v7"`); a client
/// treats it as opaque.
enum EntityTag {
    /// What an `If-Match` field asks for.
    enum Condition: Equatable {
        /// `*`: any version of a key that exists.
        case any
        /// One of these versions; empty when no tag names a version (never matches).
        case versions(Set<Int64>)
    }

    /// The tag of a record at `version`.
    static func tag(_ version: Int64) -> String { "\"v\(version)\"" }

    /// `response` with the record's `ETag`.
    static func tagged(_ response: Response, _ stored: VersionedKey) -> Response {
        var response = response
        response.headers[.eTag] = tag(stored.version)
        return response
    }

    /// Reads an `If-Match` value: `*`, or a comma-separated list of entity tags. Weak tags
    /// never match (`If-Match` compares strongly), nor do tags this API did not make.
    static func parseIfMatch(_ text: String) -> Condition {
        let items = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        if items.contains("*") { return .any }
        var versions: Set<Int64> = []
        for item in items {
            guard item.count >= 4, item.hasPrefix("\"v"), item.hasSuffix("\""),
                let version = Int64(item.dropFirst(2).dropLast()), version >= 0
            else { continue }
            versions.insert(version)
        }
        return .versions(versions)
    }
}

extension String {
    /// `nil` for a string of only whitespace.
    var nilIfBlank: String? {
        allSatisfy(\.isWhitespace) ? nil : self
    }
}
