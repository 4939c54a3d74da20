/// One entry of a key's scope list, in the old service's syntax.
///
/// Patterns match a normalized path written without its leading slash (`api1`, `api1/x`):
/// - `*`: every path;
/// - `` or `/`: only the root;
/// - `api1`: exactly `/api1`;
/// - `api1*`: every path whose text starts with `api1` (`/api1`, `/api1/x`, and also
///   `/api10`: a trailing `*` is a text prefix, as in the old service and in globs);
/// - `api1/`: everything below `/api1`, but not `/api1` itself.
///
/// A leading `/` is ignored. A `*` anywhere but at the end is refused rather than guessed at.
public enum ScopePattern: Sendable, Hashable, CustomStringConvertible {
    case all
    case root
    case exact(String)
    case prefix(String)

    /// Parses a pattern, refusing characters that no normalized path can hold.
    public init(parsing text: some StringProtocol) throws(TollgateError) {
        var body = Substring(text)
        if body.first == "/" { body = body.dropFirst() }
        if body == "*" {
            self = .all
            return
        }
        if body.isEmpty {
            self = .root
            return
        }
        let isPrefix = body.last == "*"
        if isPrefix { body = body.dropLast() }
        for byte in body.utf8
        where byte == UInt8(ascii: "*") || byte <= 0x20 || byte >= 0x7F || byte == UInt8(ascii: "?")
            || byte == UInt8(ascii: "#") || byte == UInt8(ascii: "%") || byte == UInt8(ascii: "\\")
            || byte == UInt8(ascii: "\"")
        {
            throw TollgateError(
                .invalidScope,
                "scope pattern '\(text)' is not valid: use '*', '', '/', 'api1', 'api1*' or 'api1/' (a '*' only at the end; no spaces, quotes, '%', '?' or '#')"
            )
        }
        if body.split(separator: "/", omittingEmptySubsequences: false).dropLast().contains(where: { $0.isEmpty || $0 == "." || $0 == ".." }
        ) {
            throw TollgateError(.invalidScope, "scope pattern '\(text)' has an empty, '.' or '..' segment, which no request path can have")
        }
        self = isPrefix ? .prefix(String(body)) : .exact(String(body))
    }

    /// Whether a normalized path (no leading slash, `""` for the root) is in this scope.
    ///
    /// `api1/` is stored as `.prefix("api1/")`: below `/api1` is exactly "starts with `api1/`".
    @inlinable
    public func matches(_ path: Substring) -> Bool {
        switch self {
        case .all: return true
        case .root: return path.isEmpty
        case .exact(let name):
            if name.last == "/" { return path.utf8.count > name.utf8.count && path.utf8.starts(with: name.utf8) }
            return path.utf8.elementsEqual(name.utf8)
        case .prefix(let start): return path.utf8.starts(with: start.utf8)
        }
    }

    /// The pattern as written in specs and listings (`*`, `/`, `api1`, `api1*`, `api1/`).
    public var description: String {
        switch self {
        case .all: "*"
        case .root: "/"
        case .exact(let name): name
        case .prefix(let start): start + "*"
        }
    }
}

extension ScopePattern: SpecText {}
