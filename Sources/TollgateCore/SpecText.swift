/// A value written as one line of spec text (`api1*`, `api1:10/minute`), which JSON carries
/// as that same string, so that the CLI, the admin API and imports all speak one language.
public protocol SpecText: Codable, CustomStringConvertible {
    init(parsing text: some StringProtocol) throws(TollgateError)
}

extension SpecText {
    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        self = try Self(parsing: text)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}

extension Sequence where Element: SpecText {
    /// The specs as stores keep them: one text, separated by spaces (no spec holds one).
    @inlinable public var storedText: String {
        map(\.description).joined(separator: " ")
    }
}
