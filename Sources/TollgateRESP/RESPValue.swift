import NIOCore

/// One decoded reply, RESP2 or RESP3.
///
/// Binary payloads stay `ByteBuffer` slices of the receive buffer, so reading a reply costs
/// no copy; the accessors (``string``, ``int``, ``array``, ...) give the common views without
/// a `switch` at every call site. RESP2 "null bulk string", "null array" and RESP3 `_` all
/// decode to ``null`` because callers never need to tell them apart. RESP3 attributes are
/// skipped by the decoder (they are out-of-band hints no caller of this module uses).
public enum RESPValue: Sendable, Hashable {
    /// `+OK`-style status text.
    case simpleString(String)
    /// `-ERR ...` or RESP3 bulk error (`!`): the server's error text.
    case error(String)
    /// `:42`
    case integer(Int64)
    /// `$n` payload (binary safe).
    case bulkString(ByteBuffer)
    /// RESP2 null bulk string / null array, RESP3 `_`.
    case null
    /// `*n`
    case array([RESPValue])
    /// RESP3 `#t` / `#f`
    case boolean(Bool)
    /// RESP3 `,1.5` (also `inf`, `-inf`, `nan`)
    case double(Double)
    /// RESP3 `(123...`: kept as its decimal text since it may exceed 64 bits.
    case bigNumber(String)
    /// RESP3 `=`: `format` is the three-letter type (`txt`, `mkd`), `text` the payload after it.
    case verbatimString(format: String, text: ByteBuffer)
    /// RESP3 `%n`: keys are unique in Redis replies, so a dictionary loses nothing.
    case map([RESPValue: RESPValue])
    /// RESP3 `~n`: kept in wire order.
    case set([RESPValue])
    /// RESP3 `>n`: out-of-band messages (pub/sub, client tracking).
    case push([RESPValue])
}

extension RESPValue {
    /// Text of a simple string, bulk string, verbatim string or big number; `nil` otherwise.
    public var string: String? {
        switch self {
        case .simpleString(let s), .bigNumber(let s): return s
        case .bulkString(let b): return String(buffer: b)
        case .verbatimString(_, let b): return String(buffer: b)
        default: return nil
        }
    }

    /// The raw bytes of a bulk or verbatim string (or the UTF-8 of a simple string).
    public var bytes: ByteBuffer? {
        switch self {
        case .bulkString(let b), .verbatimString(_, let b): return b
        case .simpleString(let s): return ByteBuffer(string: s)
        default: return nil
        }
    }

    /// An integer reply, or a string reply that holds a decimal integer (Redis returns
    /// counters stored with SET as bulk strings, so callers want both to read the same).
    public var int: Int? {
        switch self {
        case .integer(let i): return Int(exactly: i)
        case .bulkString(let b): return Int(String(buffer: b))
        case .simpleString(let s): return Int(s)
        default: return nil
        }
    }

    /// A RESP3 double, or anything ``int`` or ``string`` can read as a number.
    public var double: Double? {
        switch self {
        case .double(let d): return d
        case .integer(let i): return Double(i)
        default: return self.string.flatMap { Double($0) }
        }
    }

    /// A RESP3 boolean, or the RESP2 convention of `:1` / `:0`.
    public var bool: Bool? {
        switch self {
        case .boolean(let b): return b
        case .integer(let i): return i != 0
        default: return nil
        }
    }

    /// Elements of an array, set or push.
    public var array: [RESPValue]? {
        switch self {
        case .array(let a), .set(let a), .push(let a): return a
        default: return nil
        }
    }

    /// A RESP3 map, or a RESP2 flat `[k1, v1, k2, v2]` array (what HGETALL returns in
    /// RESP2) read as one, so callers work under either protocol.
    public var map: [RESPValue: RESPValue]? {
        switch self {
        case .map(let m): return m
        case .array(let a) where a.count % 2 == 0:
            var m = [RESPValue: RESPValue](minimumCapacity: a.count / 2)
            var i = 0
            while i < a.count {
                m[a[i]] = a[i + 1]
                i += 2
            }
            return m
        default: return nil
        }
    }

    /// ``map`` with keys read as strings; non-string keys are dropped.
    public var stringMap: [String: RESPValue]? {
        guard let m = self.map else { return nil }
        var out = [String: RESPValue](minimumCapacity: m.count)
        for (k, v) in m {
            if let key = k.string { out[key] = v }
        }
        return out
    }

    /// True for every flavour of null.
    public var isNull: Bool {
        if case .null = self { return true }
        return false
    }

    /// The error text of an error reply, `nil` for any other reply.
    public var errorMessage: String? {
        if case .error(let m) = self { return m }
        return nil
    }
}

extension RESPValue: CustomStringConvertible {
    public var description: String {
        switch self {
        case .simpleString(let s): return "+\(s)"
        case .error(let s): return "-\(s)"
        case .integer(let i): return ":\(i)"
        case .bulkString(let b): return "$\"\(String(buffer: b))\""
        case .null: return "null"
        case .array(let a): return "[\(a.map(\.description).joined(separator: ", "))]"
        case .boolean(let b): return "#\(b)"
        case .double(let d): return ",\(d)"
        case .bigNumber(let s): return "(\(s)"
        case .verbatimString(let f, let b): return "=\(f):\(String(buffer: b))"
        case .map(let m): return "{\(m.map { "\($0.key): \($0.value)" }.joined(separator: ", "))}"
        case .set(let a): return "~[\(a.map(\.description).joined(separator: ", "))]"
        case .push(let a): return ">[\(a.map(\.description).joined(separator: ", "))]"
        }
    }
}
