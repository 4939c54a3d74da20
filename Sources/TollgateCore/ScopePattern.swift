/// One entry of a key's scope list, in the old service's syntax.
///
/// Patterns match a normalized path written without its leading slash (`api1`, `api1/x`):
/// - `*`: every path;
/// - `` or `/`: only the root;
/// - `api1`: exactly `/api1`;
/// - `api1*`: `/api1` and every path below it (`/api1/x`), but not `/api10`;
/// - `api1/`: every path below `/api1`, but not `/api1` itself.
///
/// "Below" is below a `/` boundary, never a text prefix: `api*` reaches `/api` and
/// `/api/x` but not `/api1`, and `ap*` none of `/api1` `/api2` `/api3`. A wider reading
/// would hand keys APIs they were never granted, including ones added later.
///
/// A leading `/` is ignored. Anything else is refused rather than guessed at: a `*` that is
/// not the last character, `api1/*` (did it mean `api1/` or `api1*`?), and text no
/// normalized path can hold (dot or empty segments, spaces, `%`, `?`, `#`, `\`, `"`).
public enum ScopePattern: Sendable, Hashable, CustomStringConvertible {
    /// `*`: every path.
    case all
    /// `` or `/`: only the root.
    case root
    /// `api1`: exactly that path.
    case exact(String)
    /// `api1*`: the path and everything below it.
    case tree(String)
    /// `api1/`: everything below the path, not the path itself.
    case below(String)

    /// Parses a pattern, refusing any that no normalized path could match.
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
        let quoted = TollgateError.quote(text)
        let make: (String) -> ScopePattern
        if body.last == "*" {
            body = body.dropLast()
            if body.last == "/" {
                let name = TollgateError.excerpt(body.dropLast())
                throw TollgateError(
                    .invalidScope,
                    "scope pattern \(quoted) is ambiguous: write '\(name)/' for everything below /\(name), or '\(name)*' for /\(name) and everything below it"
                )
            }
            make = ScopePattern.tree
        } else if body.last == "/" {
            body = body.dropLast()
            make = ScopePattern.below
        } else {
            make = ScopePattern.exact
        }
        for byte in body.utf8
        where byte == UInt8(ascii: "*") || byte <= 0x20 || byte >= 0x7F || byte == UInt8(ascii: "?")
            || byte == UInt8(ascii: "#") || byte == UInt8(ascii: "%") || byte == UInt8(ascii: "\\")
            || byte == UInt8(ascii: "\"")
        {
            throw TollgateError(
                .invalidScope,
                "scope pattern \(quoted) is not valid: use '*', '', '/', 'api1', 'api1*' or 'api1/' (a '*' only at the end; no spaces, quotes, '%', '?' or '#')"
            )
        }
        if body.split(separator: "/", omittingEmptySubsequences: false).contains(where: { $0.isEmpty || $0 == "." || $0 == ".." }) {
            throw TollgateError(
                .invalidScope,
                "scope pattern \(quoted) has an empty, '.' or '..' segment, which no request path can have (they are refused with 400)"
            )
        }
        self = make(String(body))
    }

    /// Whether a normalized path (no leading slash, `""` for the root) is in this scope.
    @inlinable
    public func matches(_ path: Substring) -> Bool {
        switch self {
        case .all: return true
        case .root: return path.isEmpty
        case .exact(let name): return Self.match(path, name, itself: true, below: false)
        case .tree(let name): return Self.match(path, name, itself: true, below: true)
        case .below(let name): return Self.match(path, name, itself: false, below: true)
        }
    }

    /// Whether `path` is `name` (when `itself`) or below it at a `/` (when `below`).
    @inlinable
    static func match(_ path: Substring, _ name: String, itself: Bool, below: Bool) -> Bool {
        var rest = path.utf8.makeIterator()
        for byte in name.utf8 {
            guard rest.next() == byte else { return false }
        }
        switch rest.next() {
        case nil: return itself
        case UInt8(ascii: "/"): return below
        default: return false
        }
    }

    /// Whether some path matches both this pattern and `other`: a limit whose pattern
    /// overlaps none of a key's scopes can never apply to a request the key may make.
    public func overlaps(_ other: ScopePattern) -> Bool {
        guard let mine = span, let theirs = other.span else { return true }  // `*` overlaps every pattern
        if mine.name == theirs.name { return mine.itself && theirs.itself || mine.below && theirs.below }
        // Different names overlap only if one is below the other, and then only through
        // the upper pattern's "below" part.
        if theirs.name.utf8.starts(with: (mine.name + "/").utf8) { return mine.below }
        if mine.name.utf8.starts(with: (theirs.name + "/").utf8) { return theirs.below }
        return false
    }

    /// The pattern as a name with "itself" and "below" parts; `nil` for `*`.
    private var span: (name: String, itself: Bool, below: Bool)? {
        switch self {
        case .all: nil
        case .root: ("", true, false)
        case .exact(let name): (name, true, false)
        case .tree(let name): (name, true, true)
        case .below(let name): (name, false, true)
        }
    }

    /// The pattern as written in specs and listings (`*`, `/`, `api1`, `api1*`, `api1/`).
    public var description: String {
        switch self {
        case .all: "*"
        case .root: "/"
        case .exact(let name): name
        case .tree(let name): name + "*"
        case .below(let name): name + "/"
        }
    }
}

extension ScopePattern: SpecText {}
