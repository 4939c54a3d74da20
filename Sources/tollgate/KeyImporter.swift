import Foundation
import TollgateCore

/// Reads a `keys import` file, checking every line before anything is stored.
enum KeyImporter {
    /// The keys a file holds, and the warnings about them, each naming its line.
    struct Result {
        var keys: [APIKey]
        var warnings: [String]
    }

    static func read(path: String, now: Timestamp, routes: [String]) throws(TollgateError) -> Result {
        let data: Data
        do {
            data = path == "-" ? FileHandle.standardInput.readDataToEndOfFile() : try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw TollgateError(.invalidInput, "cannot read \(TollgateError.quote(path, limit: 1024)): check the path and its permissions")
        }
        let name = path == "-" ? "standard input" : TollgateError.quote(path, limit: 1024)
        let decoder = JSONDecoder()
        var result = Result(keys: [], warnings: [])
        // Where each id and digest was first seen, so that a repeat names both lines.
        var lineOfID: [KeyID: Int] = [:]
        var lineOfDigest: [KeyDigest: Int] = [:]
        var lineNumber = 0
        for line in data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
            lineNumber += 1
            if line.allSatisfy({ $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\r") || $0 == UInt8(ascii: "\t") }) { continue }
            let key: APIKey
            let hasOwnID: Bool
            do {
                let entry = try decoder.decode(KeyImportLine.self, from: line)
                key = try self.key(from: entry, now: now)
                hasOwnID = entry.id != nil
            } catch let error as TollgateError {
                throw TollgateError(error.code, "\(name) line \(lineNumber): \(error.message); nothing was imported")
            } catch {
                throw TollgateError(
                    .invalidInput,
                    "\(name) line \(lineNumber): not a key object (\(describe(error))); each line needs \"key\" or \"digest\" and \"scopes\"; nothing was imported"
                )
            }
            if hasOwnID, let first = lineOfID[key.id] {
                throw TollgateError(
                    .invalidInput,
                    "\(name) lines \(first) and \(lineNumber) both have the id '\(key.id)': give each key its own id; nothing was imported"
                )
            }
            if let first = lineOfDigest[key.digest] {
                throw TollgateError(
                    .invalidInput,
                    "\(name) lines \(first) and \(lineNumber) hold the same key (the same secret or digest): keep one of them; nothing was imported"
                )
            }
            lineOfID[key.id] = lineNumber
            lineOfDigest[key.digest] = lineNumber
            let warnings = KeyAdvice.warnings(scopes: key.scopes, limits: key.limits, routes: routes)
            if !warnings.isEmpty { result.warnings.append("\(name) line \(lineNumber): " + warnings.joined(separator: "; ")) }
            result.keys.append(key)
        }
        return result
    }

    static func key(from entry: KeyImportLine, now: Timestamp) throws(TollgateError) -> APIKey {
        let draft = KeyDraft(
            name: entry.name ?? "",
            scopes: entry.scopes,
            limits: entry.limits ?? [],
            expiresAt: try entry.expiresAt.map { text throws(TollgateError) in try Timestamp(parsing: text, now: now) }
        )
        let id = try entry.id.map { text throws(TollgateError) in try KeyID(validating: text) } ?? .generate()
        switch (entry.key, entry.digest) {
        case (let secret?, nil):
            return try KeyIssuer.issue(draft, secret: secret, id: id, now: now).key
        case (nil, let hex?):
            guard let digest = KeyDigest(hex: hex) else {
                throw TollgateError(.invalidInput, "\"digest\" must be 64 hex digits (a SHA-256)")
            }
            try KeyIssuer.validate(draft, now: now)
            return APIKey(
                id: id, digest: digest, name: draft.name, scopes: draft.scopes, limits: draft.limits, createdAt: now,
                expiresAt: draft.expiresAt)
        default:
            throw TollgateError(.invalidInput, "give exactly one of \"key\" and \"digest\"")
        }
    }

    private static func describe(_ error: any Error) -> String {
        switch error {
        case DecodingError.keyNotFound(let key, _): "missing \"\(key.stringValue)\""
        case DecodingError.typeMismatch(_, let context), DecodingError.valueNotFound(_, let context):
            "\"\(context.codingPath.map(\.stringValue).joined(separator: "."))\" has the wrong type"
        case DecodingError.dataCorrupted(let context):
            context.underlyingError.map { "\($0)" } ?? context.debugDescription
        default: "\(error)"
        }
    }
}
