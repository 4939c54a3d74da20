/// The format of secrets Tollgate generates: `tg_`, 24 base62 characters of randomness
/// (142 bits) and a 6-character base62 CRC-32 of the text before it.
///
/// The prefix makes leaked keys easy to scan for; the checksum lets the data plane refuse
/// a mistyped or forged `tg_` key without touching the store.
public enum KeySecret {
    public static let marker = "tg_"
    static let randomLength = 24
    static let checksumLength = 6
    public static let length = marker.utf8.count + randomLength + checksumLength

    /// A new secret from a cryptographically secure generator.
    public static func generate() -> String {
        var generator = SystemRandomNumberGenerator()
        return generate(using: &generator)
    }

    public static func generate(using generator: inout some RandomNumberGenerator) -> String {
        let body = marker + Base62.random(count: randomLength, using: &generator)
        return body + Base62.encode(UInt64(CRC32.checksum(body.utf8)), width: checksumLength)
    }

    /// Whether `secret` may be a key: any operator-chosen text passes, but a `tg_` secret
    /// must have the generated length and a matching checksum.
    public static func isPlausible(_ secret: String) -> Bool {
        let utf8 = secret.utf8
        guard utf8.starts(with: marker.utf8) else { return !utf8.isEmpty }
        guard utf8.count == length else { return false }
        let split = utf8.index(utf8.startIndex, offsetBy: length - checksumLength)
        var expected = UInt64(CRC32.checksum(utf8[..<split]))
        // Compare from the last character backwards, as `Base62.encode` writes them.
        for byte in utf8[split...].reversed() {
            guard byte == Base62.alphabet[Int(expected % 62)] else { return false }
            expected /= 62
        }
        return true
    }
}

/// Base62 text (`0-9A-Za-z`): dense, and safe in headers, URLs and shells.
enum Base62 {
    static let alphabet = Array("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz".utf8)

    static func random(count: Int, using generator: inout some RandomNumberGenerator) -> String {
        var text = [UInt8]()
        text.reserveCapacity(count)
        for _ in 0..<count {
            // Rejection sampling keeps every character equally likely.
            text.append(alphabet[Int(UInt8.random(in: 0..<62, using: &generator))])
        }
        return String(decoding: text, as: UTF8.self)
    }

    static func encode(_ value: UInt64, width: Int) -> String {
        var value = value
        var text = [UInt8](repeating: alphabet[0], count: width)
        for index in stride(from: width - 1, through: 0, by: -1) {
            text[index] = alphabet[Int(value % 62)]
            value /= 62
        }
        return String(decoding: text, as: UTF8.self)
    }
}

/// CRC-32 (IEEE 802.3), the checksum GitHub-style tokens use.
enum CRC32 {
    static let table: [UInt32] = (0..<256).map { index in
        var value = UInt32(index)
        for _ in 0..<8 { value = value & 1 == 1 ? 0xEDB8_8320 ^ (value >> 1) : value >> 1 }
        return value
    }

    static func checksum(_ bytes: some Sequence<UInt8>) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes { crc = table[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8) }
        return crc ^ 0xFFFF_FFFF
    }
}

/// The public, stable name of a key: safe to log, print and put in URLs.
public struct KeyID: Sendable, Hashable, Comparable, Codable, CustomStringConvertible {
    public var rawValue: String

    public init(rawValue: String) { self.rawValue = rawValue }

    /// A new random id, `key_` and 16 base62 characters.
    public static func generate() -> KeyID {
        var generator = SystemRandomNumberGenerator()
        return generate(using: &generator)
    }

    /// A new random id from `generator`, which must be as unpredictable as the system's: an
    /// import that makes a million ids draws its randomness in bulk.
    public static func generate(using generator: inout some RandomNumberGenerator) -> KeyID {
        // Eight characters from each random word, a byte each: bytes from 248 up are
        // dropped, so that each of the 62 characters stays equally likely.
        var text: [UInt8] = Array("key_".utf8)
        text.reserveCapacity(20)
        while text.count < 20 {
            var word = generator.next()
            for _ in 0..<8 where text.count < 20 {
                let byte = UInt8(truncatingIfNeeded: word)
                word >>= 8
                if byte < 248 { text.append(Base62.alphabet[Int(byte % 62)]) }
            }
        }
        return KeyID(rawValue: String(decoding: text, as: UTF8.self))
    }

    /// An id given by an operator (an import, later the admin API), checked against the one
    /// grammar every id follows: 1 to ``maximumLength`` characters of `A-Z a-z 0-9 _ . -`,
    /// starting with a letter or digit. Ids are printed, logged and put in URLs and shell
    /// commands, so an empty, spaced, control-character or huge id is refused.
    public init(validating text: String) throws(TollgateError) {
        guard Self.isValid(text) else {
            throw TollgateError(
                .invalidInput,
                "id \(TollgateError.quote(text)) is not valid: an id is 1 to \(Self.maximumLength) letters, digits, '_', '.' or '-', starting with a letter or digit (e.g. key_partner-1)"
            )
        }
        self.init(rawValue: text)
    }

    /// The longest id accepted.
    public static let maximumLength = 64

    /// Whether `text` follows the id grammar (see ``init(validating:)``).
    public static func isValid(_ text: String) -> Bool {
        let utf8 = text.utf8
        guard let first = utf8.first, utf8.count <= maximumLength, isAlphanumeric(first) else { return false }
        return utf8.allSatisfy { isAlphanumeric($0) || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "-") }
    }

    private static func isAlphanumeric(_ byte: UInt8) -> Bool {
        (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte)
            || (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte)
    }

    public var description: String { rawValue }

    public static func < (lhs: KeyID, rhs: KeyID) -> Bool { lhs.rawValue < rhs.rawValue }

    public init(from decoder: any Decoder) throws {
        rawValue = try decoder.singleValueContainer().decode(String.self)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }
}
