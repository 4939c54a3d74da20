import Hummingbird
import TollgateCore

/// The `Host` values the control plane answers, against DNS rebinding: a web page on a name
/// the attacker controls can make its name resolve to 127.0.0.1 and read what the loopback
/// listener answers (`/metrics` needs no token), but its requests carry the attacker's
/// name in `Host`.
///
/// Answered by default: IP address literals (a page's origin then is that address, so no
/// rebinding is involved), `localhost` and names under `.localhost` (which resolve only to
/// loopback). More names with `--admin-allowed-host`; `*` answers any.
public struct AllowedHosts: Sendable {
    private let names: Set<String>
    private let any: Bool

    public init(_ extra: [String] = []) {
        names = Set(extra.map { Self.normalized($0) })
        any = extra.contains("*")
    }

    /// Whether a request whose `Host` (or `:authority`) is `authority` is answered. A
    /// request without one (HTTP/1.0) cannot come from a browser page, and is.
    public func allows(_ authority: String?) -> Bool {
        guard !any, let authority, !authority.isEmpty else { return true }
        let host = Self.host(of: authority)
        if host.hasPrefix("[") || Self.isIPv4(host) { return true }
        if host == "localhost" || host.hasSuffix(".localhost") { return true }
        return names.contains(host)
    }

    /// The host of an authority, without its port, lower-cased, without a trailing dot.
    static func host(of authority: String) -> String {
        var host = Substring(authority)
        if host.hasPrefix("[") {
            if let end = host.firstIndex(of: "]") { host = host[...end] }
        } else if let colon = host.lastIndex(of: ":") {
            host = host[..<colon]
        }
        return normalized(String(host))
    }

    static func normalized(_ name: String) -> String {
        var name = name.lowercased()
        if name.hasSuffix(".") { name.removeLast() }
        return name
    }

    static func isIPv4(_ host: String) -> Bool {
        let parts = host.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4
            && parts.allSatisfy { part in
                !part.isEmpty && part.count <= 3 && part.allSatisfy(\.isASCIIDigit) && Int(part).map { $0 <= 255 } == true
            }
    }
}

extension Character {
    fileprivate var isASCIIDigit: Bool { isASCII && isNumber }
}

/// Answers `421 host_not_allowed` to a request whose `Host` is not allowed, before any
/// route (health, metrics, the admin API) sees it.
struct HostCheckMiddleware<Context: RequestContext>: RouterMiddleware {
    let allowed: AllowedHosts

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let authority = request.head.authority
        guard allowed.allows(authority) else { throw AdminError.hostNotAllowed(authority ?? "") }
        return try await next(request, context)
    }
}

extension AdminError {
    static func hostNotAllowed(_ authority: String) -> AdminError {
        let host = TollgateError.excerpt(AllowedHosts.host(of: authority))
        return AdminError(
            status: .misdirectedRequest, code: "host_not_allowed",
            detail:
                "This listener does not answer for Host '\(host)' (a guard against DNS rebinding): use its address or localhost, or start serve with --admin-allowed-host \(host)."
        )
    }
}
