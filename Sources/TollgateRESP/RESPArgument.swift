import NIOCore

/// One argument of a command, sent as a RESP bulk string.
///
/// Keeping the caller's value (a `String`, a `ByteBuffer`, an integer) instead of converting
/// it up front lets the encoder write it straight into the outgoing buffer: no intermediate
/// `String` for integers, no copy for strings beyond the final write.
public enum RESPArgument: Sendable, Hashable {
    case string(String)
    case bytes(ByteBuffer)
    case integer(Int)
}

extension RESPArgument: ExpressibleByStringLiteral {
    public init(stringLiteral value: String) { self = .string(value) }
}

/// Allows `RESPCommand("GET", "user:\(id)")`.
extension RESPArgument: ExpressibleByStringInterpolation {}

extension RESPArgument: ExpressibleByIntegerLiteral {
    public init(integerLiteral value: Int) { self = .integer(value) }
}

extension RESPArgument: CustomStringConvertible {
    public var description: String {
        switch self {
        case .string(let s): return s
        case .bytes(let b): return String(buffer: b)
        case .integer(let i): return String(i)
        }
    }
}
