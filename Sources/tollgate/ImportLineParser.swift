import TollgateCore

/// Reads the usual import line (a flat JSON object of strings, arrays of strings and
/// `null`, without escapes) about ten times faster than `JSONDecoder`, which spends most
/// of a million-line import in generic containers.
///
/// It only ever answers a line that `JSONDecoder` would decode to the same value: anything
/// else (an escape, a number, a nested object, an unknown or repeated field, bytes that are
/// not UTF-8, a scope or limit that does not parse) returns `nil`, and the caller refuses
/// unknown and repeated members and decodes the rest with `JSONDecoder`, so that every
/// message stays as it was.
enum ImportLineParser {
    /// Scopes and limits parsed already: files repeat the same few on every line.
    struct Specs {
        var scopes: [String: ScopePattern] = [:]
        var limits: [String: LimitSpec] = [:]
        /// Past this many, a table starts over, so that a file of distinct specs costs little.
        static let capacity = 512

        mutating func scope(_ text: String) throws(TollgateError) -> ScopePattern {
            if let known = scopes[text] { return known }
            let scope = try ScopePattern(parsing: text)
            if scopes.count >= Self.capacity { scopes.removeAll(keepingCapacity: true) }
            scopes[text] = scope
            return scope
        }

        mutating func limit(_ text: String) throws(TollgateError) -> LimitSpec {
            if let known = limits[text] { return known }
            let limit = try LimitSpec(parsing: text)
            if limits.count >= Self.capacity { limits.removeAll(keepingCapacity: true) }
            limits[text] = limit
            return limit
        }
    }

    static func parse(_ line: UnsafeBufferPointer<UInt8>, specs: inout Specs) -> KeyImportLine? {
        var reader = Reader(bytes: line)
        var fields = Fields()
        reader.skipSpace()
        guard reader.take(UInt8(ascii: "{")) else { return nil }
        reader.skipSpace()
        if !reader.take(UInt8(ascii: "}")) {
            repeat {
                reader.skipSpace()
                guard let name = reader.stringBytes(), reader.skipSpace(), reader.take(UInt8(ascii: ":")) else { return nil }
                reader.skipSpace()
                guard fields.read(field: name, from: &reader) else { return nil }
                reader.skipSpace()
            } while reader.take(UInt8(ascii: ","))
            guard reader.take(UInt8(ascii: "}")) else { return nil }
        }
        reader.skipSpace()
        guard reader.atEnd else { return nil }
        return fields.line(specs: &specs)
    }

    /// The fields seen so far; a field seen twice makes the line go to `JSONDecoder`.
    private struct Fields {
        var seen: UInt8 = 0
        var id, key, digest, name, expiresAt: String?
        var scopes, limits: [String]?

        mutating func read(field: UnsafeBufferPointer<UInt8>, from reader: inout Reader) -> Bool {
            let bit: UInt8
            switch String(decoding: field, as: UTF8.self) {
            case "id": bit = 1
            case "key": bit = 2
            case "digest": bit = 4
            case "name": bit = 8
            case "scopes": bit = 16
            case "limits": bit = 32
            case "expires_at": bit = 64
            default: return false
            }
            guard seen & bit == 0 else { return false }
            seen |= bit
            if bit == 16 || bit == 32 {
                if reader.takeNull() { return bit == 32 }  // "scopes" may not be null
                guard let array = reader.stringArray() else { return false }
                if bit == 16 { scopes = array } else { limits = array }
                return true
            }
            if reader.takeNull() { return true }
            guard let text = reader.string() else { return false }
            switch bit {
            case 1: id = text
            case 2: key = text
            case 4: digest = text
            case 8: name = text
            default: expiresAt = text
            }
            return true
        }

        func line(specs: inout Specs) -> KeyImportLine? {
            guard let scopes else { return nil }
            do {
                var scopePatterns: [ScopePattern] = []
                scopePatterns.reserveCapacity(scopes.count)
                for text in scopes { scopePatterns.append(try specs.scope(text)) }
                var limitSpecs: [LimitSpec]?
                if let limits {
                    limitSpecs = []
                    limitSpecs?.reserveCapacity(limits.count)
                    for text in limits { limitSpecs?.append(try specs.limit(text)) }
                }
                return KeyImportLine(
                    id: id, key: key, digest: digest, name: name, scopes: scopePatterns, limits: limitSpecs, expiresAt: expiresAt)
            } catch {
                return nil
            }
        }
    }

    private struct Reader {
        let bytes: UnsafeBufferPointer<UInt8>
        var index = 0

        var atEnd: Bool { index == bytes.count }

        @discardableResult
        mutating func skipSpace() -> Bool {
            while index < bytes.count, bytes[index] == 0x20 || bytes[index] == 0x09 || bytes[index] == 0x0D || bytes[index] == 0x0A {
                index += 1
            }
            return true
        }

        mutating func take(_ byte: UInt8) -> Bool {
            guard index < bytes.count, bytes[index] == byte else { return false }
            index += 1
            return true
        }

        mutating func takeNull() -> Bool {
            guard bytes.count - index >= 4, bytes[index] == UInt8(ascii: "n"), bytes[index + 1] == UInt8(ascii: "u"),
                bytes[index + 2] == UInt8(ascii: "l"), bytes[index + 3] == UInt8(ascii: "l")
            else { return false }
            index += 4
            return true
        }

        /// A string's bytes, between its quotes; `nil` at an escape or a control character.
        mutating func stringBytes() -> UnsafeBufferPointer<UInt8>? {
            guard take(UInt8(ascii: "\"")) else { return nil }
            let start = index
            while index < bytes.count {
                let byte = bytes[index]
                if byte == UInt8(ascii: "\"") {
                    index += 1
                    return UnsafeBufferPointer(rebasing: bytes[start..<index - 1])
                }
                if byte == UInt8(ascii: "\\") || byte < 0x20 { return nil }
                index += 1
            }
            return nil
        }

        mutating func string() -> String? {
            guard let raw = stringBytes() else { return nil }
            if raw.allSatisfy({ $0 < 0x80 }) { return String(decoding: raw, as: UTF8.self) }
            return String(validating: raw, as: UTF8.self)
        }

        mutating func stringArray() -> [String]? {
            guard take(UInt8(ascii: "[")) else { return nil }
            var array: [String] = []
            skipSpace()
            if take(UInt8(ascii: "]")) { return array }
            repeat {
                skipSpace()
                guard let text = string() else { return nil }
                array.append(text)
                skipSpace()
            } while take(UInt8(ascii: ","))
            return take(UInt8(ascii: "]")) ? array : nil
        }
    }
}
