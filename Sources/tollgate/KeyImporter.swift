import Foundation
import TollgateCore

/// Reads a `keys import` file, checking every line before anything is stored.
enum KeyImporter {
    static func read(path: String, now: Timestamp) throws(TollgateError) -> [APIKey] {
        let data: Data
        do {
            data = path == "-" ? FileHandle.standardInput.readDataToEndOfFile() : try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw TollgateError(.invalidInput, "cannot read '\(path)': check the path and its permissions")
        }
        let decoder = JSONDecoder()
        var keys: [APIKey] = []
        var lineNumber = 0
        for line in data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
            lineNumber += 1
            if line.allSatisfy({ $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\r") || $0 == UInt8(ascii: "\t") }) { continue }
            do {
                let entry = try decoder.decode(KeyImportLine.self, from: line)
                keys.append(try key(from: entry, now: now))
            } catch let error as TollgateError {
                throw TollgateError(error.code, "\(path) line \(lineNumber): \(error.message); nothing was imported")
            } catch {
                throw TollgateError(
                    .invalidInput,
                    "\(path) line \(lineNumber): not a key object (\(describe(error))); each line needs \"key\" or \"digest\" and \"scopes\"; nothing was imported"
                )
            }
        }
        return keys
    }

    static func key(from entry: KeyImportLine, now: Timestamp) throws(TollgateError) -> APIKey {
        let draft = KeyDraft(
            name: entry.name ?? "",
            scopes: entry.scopes,
            limits: entry.limits ?? [],
            expiresAt: try entry.expiresAt.map { text throws(TollgateError) in try Timestamp(parsing: text, now: now) }
        )
        let id = entry.id.map(KeyID.init(rawValue:)) ?? .generate()
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
