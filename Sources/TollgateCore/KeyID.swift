/// The public, stable name of a key: safe to log, print and put in URLs.
public struct KeyID: Sendable, Hashable, Comparable, Codable, CustomStringConvertible {
    public var rawValue: String {
        get { Self.unpacked(storage) }
        set { storage = Self.packed(newValue) }
    }

    /// The id as given, or packed when it has the generated shape (see ``packed(_:)``).
    /// One id has one stored form, so equality and hashing of the storage are the id's.
    private var storage: String

    public init(rawValue: String) { storage = Self.packed(rawValue) }

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

    /// Throws unless the id follows the grammar (see ``init(validating:)``). One of the
    /// generated shape does, so its text is not read back to check it (an import of a
    /// million keys checks a million).
    public func validate() throws(TollgateError) {
        guard !isPacked else { return }
        _ = try KeyID(validating: rawValue)
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

    public static func < (lhs: KeyID, rhs: KeyID) -> Bool {
        // Packed forms sort as their ids do (see `packed(_:)`), without unpacking.
        if lhs.isPacked, rhs.isPacked { return lhs.storage < rhs.storage }
        return lhs.rawValue < rhs.rawValue
    }

    public init(from decoder: any Decoder) throws {
        self.init(rawValue: try decoder.singleValueContainer().decode(String.self))
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }

    // MARK: Packing

    // A generated id is 20 bytes, past the 15 that Swift keeps inside a `String` itself;
    // every longer string is a heap allocation of 64 bytes, one for each of a million held
    // keys. Its 16 base62 characters are a number below 2^96, which fits in 14 bytes of
    // seven bits: stored as a marker byte and those bytes, 15 ASCII bytes, kept inline.
    // Big-endian and of fixed length, with the alphabet in ASCII order, so two packed ids
    // compare as their texts do.

    private static let generatedPrefix = Array("key_".utf8)
    private static let packedMarker: UInt8 = 0x01
    /// Put before a given id that starts with either marker, so that no given id is ever
    /// read back as a packed one (only `init(rawValue:)` without validation lets one in).
    private static let escapeMarker: UInt8 = 0x02
    private static let packedCount = 15

    private var isPacked: Bool {
        storage.utf8.count == Self.packedCount && storage.utf8.first == Self.packedMarker
    }

    private static func packed(_ text: String) -> String {
        let utf8 = text.utf8
        if let first = utf8.first, first == packedMarker || first == escapeMarker {
            return String(decoding: [escapeMarker] + Array(utf8), as: UTF8.self)
        }
        guard utf8.count == generatedPrefix.count + 16, utf8.starts(with: generatedPrefix) else { return text }
        var high: UInt64 = 0
        var low: UInt64 = 0
        for byte in utf8.dropFirst(generatedPrefix.count) {
            guard let digit = Base62.value(of: byte) else { return text }
            // (high, low) = (high, low) * 62 + digit, a 128-bit multiply-add.
            let product = low.multipliedFullWidth(by: 62)
            let (sum, carry) = product.low.addingReportingOverflow(UInt64(digit))
            low = sum
            high = high &* 62 &+ product.high &+ (carry ? 1 : 0)
        }
        var bytes = [UInt8](repeating: 0, count: packedCount)
        bytes[0] = packedMarker
        for index in stride(from: packedCount - 1, through: 1, by: -1) {
            bytes[index] = UInt8(truncatingIfNeeded: low & 0x7F)
            low = low >> 7 | high << 57
            high >>= 7
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    private static func unpacked(_ storage: String) -> String {
        let utf8 = storage.utf8
        guard let first = utf8.first, first == packedMarker || first == escapeMarker else { return storage }
        if first == escapeMarker { return String(decoding: utf8.dropFirst(), as: UTF8.self) }
        guard utf8.count == packedCount else { return storage }
        var high: UInt64 = 0
        var low: UInt64 = 0
        for byte in utf8.dropFirst() {
            high = high << 7 | low >> 57
            low = low << 7 | UInt64(byte)
        }
        var text = [UInt8](repeating: 0, count: generatedPrefix.count + 16)
        text.replaceSubrange(0..<generatedPrefix.count, with: generatedPrefix)
        for index in stride(from: text.count - 1, through: generatedPrefix.count, by: -1) {
            // (high, low) = (high, low) / 62, the remainder the last character.
            let (quotientHigh, remainderHigh) = high.quotientAndRemainder(dividingBy: 62)
            let (quotientLow, remainder) = UInt64(62).dividingFullWidth((high: remainderHigh, low: low))
            high = quotientHigh
            low = quotientLow
            text[index] = Base62.alphabet[Int(remainder)]
        }
        return String(decoding: text, as: UTF8.self)
    }
}
