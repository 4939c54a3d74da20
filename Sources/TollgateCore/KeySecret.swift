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
        var secret = secret
        return secret.withUTF8 { isPlausible(bytes: UnsafeRawBufferPointer($0)) }
    }

    /// ``isPlausible(_:)`` on the secret's bytes, as the data plane reads them from a request.
    public static func isPlausible(bytes utf8: UnsafeRawBufferPointer) -> Bool {
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

    /// The digit a character stands for; `nil` for a character outside the alphabet.
    static func value(of byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "A")...UInt8(ascii: "Z"): byte - UInt8(ascii: "A") + 10
        case UInt8(ascii: "a")...UInt8(ascii: "z"): byte - UInt8(ascii: "a") + 36
        default: nil
        }
    }

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
