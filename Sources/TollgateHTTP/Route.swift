import NIOCore
import NIOHTTP1
import TollgateCore

/// One API the gateway serves: where it is (a path prefix), what it answers, and the name
/// that scopes, limits and usage know it by.
///
/// A request is matched against the prefix at a `/` boundary (`v1/orders` serves
/// `/v1/orders` and `/v1/orders/5`, never `/v1/orders2`). Scopes and limits then see the
/// route's name followed by the rest of the path (`orders/5`), so a key is granted an API
/// by its name wherever the API is mounted.
public struct Route: Sendable, Equatable {
    /// What a route does with an admitted request.
    public enum Action: Sendable, Equatable {
        /// Answers with a body fixed in the configuration (the old service's `api1`..`api3`).
        case fixed(FixedAnswer)
        /// Forwards the request to an upstream HTTP server and streams its answer back.
        case upstream(Upstream)
    }

    /// The API name: scopes, limits and usage use it.
    public var name: String
    /// The normalized path prefix, without its leading slash (`""` for the root).
    public var prefix: String
    /// Whether the route serves its prefix only and not the paths below it.
    public var exact: Bool
    /// The methods the route answers; `nil` for any.
    public var methods: [HTTPMethod]?
    public var action: Action

    public init(name: String, prefix: String, exact: Bool = false, methods: [HTTPMethod]? = nil, action: Action) {
        self.name = name
        self.prefix = prefix
        self.exact = exact
        self.methods = methods
        self.action = action
    }

    /// The old service's three APIs, served when no route file is given: `/api1` answers
    /// `API1` (and `GET`/`HEAD` only, at that exact path), and so on.
    public static let defaults = (1...3).map {
        Route(
            name: "api\($0)",
            prefix: "api\($0)",
            exact: true,
            methods: [.GET, .HEAD],
            action: .fixed(FixedAnswer(body: "API\($0)"))
        )
    }

    /// The scope path of a request to this route: the name, then what follows the prefix.
    func scopePath(for path: String) -> String {
        if prefix == name { return path }
        let rest = path.utf8.dropFirst(prefix.utf8.count)
        if rest.isEmpty { return name }
        return prefix.isEmpty ? name + "/" + String(Substring(rest)) : name + String(Substring(rest))
    }

    /// Whether the route serves `path` (a normalized path without its leading slash).
    func matches(_ path: String) -> Bool {
        if prefix.isEmpty { return !exact || path.isEmpty }
        guard path.utf8.starts(with: prefix.utf8) else { return false }
        if path.utf8.count == prefix.utf8.count { return true }
        return !exact && path.utf8[path.utf8.index(path.utf8.startIndex, offsetBy: prefix.utf8.count)] == UInt8(ascii: "/")
    }

    /// The `Allow` field for a `405`.
    var allowField: String {
        guard let methods else { return "*" }
        return methods.map(\.rawValue).joined(separator: ", ")
    }

    /// Whether a request with a body may reach the route (fixed answers take none).
    var takesBody: Bool {
        if case .upstream = action { return true }
        return false
    }
}

/// A fixed answer: status, content type and body, the same for every admitted request.
public struct FixedAnswer: Sendable, Hashable {
    public var status: Int
    public var contentType: String
    public var body: String

    public init(status: Int = 200, contentType: String = "text/plain; charset=utf-8", body: String) {
        self.status = status
        self.contentType = contentType
        self.body = body
    }
}

/// An upstream HTTP/1.1 server (plain `http`; TLS to upstreams is not supported).
public struct Upstream: Sendable, Hashable {
    public var host: String { didSet { derive() } }
    public var port: Int { didSet { derive() } }
    /// A path put before the forwarded path (`/base` in `http://host/base`), without a trailing slash.
    public var basePath: String
    /// Whether the route's prefix is removed from the forwarded path.
    public var stripPrefix: Bool
    public var connectTimeout: TimeAmount
    /// How long the upstream may take to begin its answer once the request is sent.
    public var responseTimeout: TimeAmount
    /// The largest request body forwarded; a larger one is answered `413`.
    public var maxBodyBytes: Int
    /// The header the key's id is sent upstream in; `nil` sends none.
    public var keyIDHeader: String?
    /// Whether an upstream `5xx` gives the request's unit back to the key's quotas.
    public var giveBackOn5xx: Bool
    /// Idle keep-alive connections kept per event loop.
    public var maxIdleConnections: Int

    public init(
        host: String,
        port: Int = 80,
        basePath: String = "",
        stripPrefix: Bool = false,
        connectTimeout: TimeAmount = .seconds(2),
        responseTimeout: TimeAmount = .seconds(30),
        maxBodyBytes: Int = 10 * 1024 * 1024,
        keyIDHeader: String? = "X-Tollgate-Key-Id",
        giveBackOn5xx: Bool = false,
        maxIdleConnections: Int = 32
    ) {
        self.host = host
        self.port = port
        self.basePath = basePath
        self.stripPrefix = stripPrefix
        self.connectTimeout = connectTimeout
        self.responseTimeout = responseTimeout
        self.maxBodyBytes = maxBodyBytes
        self.keyIDHeader = keyIDHeader
        self.giveBackOn5xx = giveBackOn5xx
        self.maxIdleConnections = maxIdleConnections
        poolKey = ""
        hostField = ""
        derive()
    }

    /// The fields made once from host and port (`didSet` does not run in `init`).
    private mutating func derive() {
        poolKey = address
        hostField = port == 80 ? host : address
    }

    /// The pool key (`host:port`): connections are shared by every route to the same host and port.
    public var address: String { "\(host):\(port)" }
    /// ``address`` made once, for the pool's lookups on the hot path.
    private(set) var poolKey: String
    /// The `Host` field sent upstream, made once rather than per forwarded request.
    private(set) var hostField: String

    /// The target sent upstream for a request target `uri` matched by a route at `prefix`.
    func target(for uri: String, prefix: String) -> String {
        var rest = Substring(uri)
        if stripPrefix, !prefix.isEmpty {
            // The prefix matched the normalized path; the raw target holds it verbatim
            // unless it was percent-encoded, when it is forwarded unstripped rather than guessed at.
            let raw = "/" + prefix
            if rest.hasPrefix(raw) { rest = rest.dropFirst(raw.utf8.count) }
        }
        if rest.isEmpty || rest.first == "?" { rest = "/" + rest }
        return basePath.isEmpty ? String(rest) : basePath + rest
    }
}

/// The routes in force and the forward-auth path, swapped whole on reload.
public struct RouteTable: Sendable {
    /// Longest prefix first, so the most specific route wins.
    public let routes: [Route]
    /// The forward-auth endpoint's normalized path, or `nil` when it is off.
    public let forwardAuthPath: String?
    /// Peers whose forwarding fields (`X-Forwarded-For`, `Forwarded`, ...) are believed and
    /// passed on; from any other peer they are replaced by what the gateway sees.
    public let trustedProxies: [IPNetwork]
    /// The prebuilt fixed answers, by route name.
    let fixedAnswers: [String: PrebuiltAnswer]

    public init(routes: [Route], forwardAuthPath: String? = "auth", trustedProxies: [IPNetwork] = []) {
        self.routes = routes.sorted { $0.prefix.utf8.count > $1.prefix.utf8.count }
        self.forwardAuthPath = forwardAuthPath
        self.trustedProxies = trustedProxies
        var answers: [String: PrebuiltAnswer] = [:]
        for route in routes {
            if case .fixed(let answer) = route.action { answers[route.name] = PrebuiltAnswer(fixed: answer) }
        }
        self.fixedAnswers = answers
    }

    /// Today's routes: `api1`..`api3`, forward-auth at `/auth`.
    public static let builtIn = RouteTable(routes: Route.defaults)

    /// The route serving `path`, if any.
    public func route(for path: String) -> Route? {
        routes.first { $0.matches(path) }
    }

    /// Whether `peer` is one of ``trustedProxies``.
    func trusts(_ peer: SocketAddress?) -> Bool {
        guard let peer, !trustedProxies.isEmpty else { return false }
        return trustedProxies.contains { $0.contains(peer) }
    }
}
