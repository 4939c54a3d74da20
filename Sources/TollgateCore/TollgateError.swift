/// An error from the domain or a store, with a code that callers map to an exit status or
/// an HTTP problem in one place, and a message written for the person who must act on it.
public struct TollgateError: Error, Sendable, Hashable, CustomStringConvertible {
    public enum Code: String, Sendable, Hashable {
        /// A limit spec that does not parse.
        case invalidLimit
        /// A scope pattern that does not parse.
        case invalidScope
        /// A time that does not parse, or an expiry in the past.
        case invalidTime
        /// Input that is not what the operation accepts (a bad import line, a bad secret).
        case invalidInput
        /// No key with that id.
        case keyNotFound
        /// A key with that secret or id exists already.
        case keyExists
        /// The store URL does not name a store Tollgate knows.
        case invalidStoreURL
        /// The store cannot be reached or failed an operation.
        case storeUnavailable
        /// The store is held by another process that must not share it.
        case storeLocked
        /// The key changed since the version the caller named (an HTTP `If-Match`).
        case versionMismatch
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}

extension TollgateError {
    /// The most characters of a user's input that an error message repeats.
    public static let excerptLength = 64

    /// `text` in single quotes, made safe to print in a one-line message: control and
    /// non-ASCII characters escaped, and cut after `limit` characters, so that a megabyte of
    /// input is never echoed back. File paths pass a larger limit: their end matters.
    public static func quote(_ text: some StringProtocol, limit: Int = excerptLength) -> String {
        "'\(excerpt(text, limit: limit))'"
    }

    /// ``quote(_:)`` without the quotes.
    public static func excerpt(_ text: some StringProtocol, limit: Int = excerptLength) -> String {
        var result = ""
        var count = 0
        for scalar in text.unicodeScalars {
            if count == limit {
                return result + "... (\(text.utf8.count) bytes in all)"
            }
            count += 1
            if scalar.value >= 0x20 && scalar.value < 0x7F {
                result.unicodeScalars.append(scalar)
            } else {
                result += scalar.escaped(asASCII: true)
            }
        }
        return result
    }
}
