import Foundation
import NIOCore
import NIOHTTP1
import TollgateCore
import Yams

/// A route file's mistakes, each with the line it is on, so that `tollgate routes check`
/// and a refused reload can point at it.
public struct RouteFileError: Error, Sendable, CustomStringConvertible {
    public struct Problem: Sendable, Hashable {
        /// The line, from 1; `nil` when the file as a whole is wrong (it cannot be read).
        public var line: Int?
        public var message: String
    }

    public var problems: [Problem]

    public var description: String {
        problems.map { problem in
            problem.line.map { "line \($0): \(problem.message)" } ?? problem.message
        }.joined(separator: "\n")
    }
}

/// Reads a route file (YAML). Every node Yams composes carries its line, so an error names
/// the line of the value at fault, not only the syntax errors the parser finds.
///
/// ```yaml
/// forward_auth:
///   path: /auth
/// trusted_proxies: [10.0.0.0/8]
/// routes:
///   - name: orders
///     prefix: /v1/orders
///     methods: [GET, POST]
///     upstream: http://127.0.0.1:8080
///     strip_prefix: true
///   - name: ping
///     prefix: /ping
///     answer: { status: 200, content_type: text/plain, body: pong }
/// ```
public enum RouteFile {
    /// Parses `text`, collecting every problem rather than stopping at the first.
    public static func parse(_ text: String) throws(RouteFileError) -> RouteTable {
        var reader = Reader()
        let table = reader.read(text)
        if !reader.problems.isEmpty { throw RouteFileError(problems: reader.problems) }
        return table
    }

    /// Reads and parses the file at `path`.
    public static func load(path: String) throws(RouteFileError) -> RouteTable {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw RouteFileError(problems: [.init(line: nil, message: "cannot read \(path): \(error.localizedDescription)")])
        }
        return try parse(text)
    }
}

private struct Reader {
    var problems: [RouteFileError.Problem] = []

    mutating func fail(_ node: Node?, _ message: String) {
        problems.append(.init(line: node?.mark?.line, message: message))
    }

    mutating func read(_ text: String) -> RouteTable {
        let root: Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch let error as YamlError {
            problems.append(Self.problem(error))
            return .builtIn
        } catch {
            problems.append(.init(line: nil, message: "\(error)"))
            return .builtIn
        }
        guard let root, let mapping = root.mapping else {
            fail(root, "the file must be a mapping with a 'routes' list")
            return .builtIn
        }
        var forwardAuthPath: String? = "auth"
        var trustedProxies: [IPNetwork] = []
        var routes: [(Route, Node)] = []
        var sawRoutes = false
        for (key, value) in mapping {
            switch key.string {
            case "routes":
                sawRoutes = true
                guard let sequence = value.sequence else {
                    fail(value, "'routes' must be a list of routes")
                    continue
                }
                for node in sequence { if let route = readRoute(node) { routes.append((route, node)) } }
            case "forward_auth":
                forwardAuthPath = readForwardAuth(value)
            case "trusted_proxies":
                trustedProxies = readTrustedProxies(value)
            default:
                fail(key, "unknown setting '\(key.string ?? "?")': the settings are routes, forward_auth and trusted_proxies")
            }
        }
        if !sawRoutes { fail(root, "the file has no 'routes' list") }
        checkUnique(routes, forwardAuthPath: forwardAuthPath)
        return RouteTable(routes: routes.map(\.0), forwardAuthPath: forwardAuthPath, trustedProxies: trustedProxies)
    }

    /// A list of addresses and CIDR blocks (`127.0.0.1`, `10.0.0.0/8`, `::1`).
    mutating func readTrustedProxies(_ node: Node) -> [IPNetwork] {
        guard let sequence = node.sequence else {
            fail(node, "'trusted_proxies' must be a list of addresses or CIDR blocks such as [127.0.0.1, 10.0.0.0/8]")
            return []
        }
        var networks: [IPNetwork] = []
        for item in sequence {
            guard let text = item.scalar?.string, let network = IPNetwork(text) else {
                fail(item, "'\(item.string ?? "?")' is not an IP address or CIDR block (write 10.0.0.0/8, 192.168.1.7 or fd00::/8)")
                continue
            }
            networks.append(network)
        }
        return networks
    }

    static func problem(_ error: YamlError) -> RouteFileError.Problem {
        switch error {
        case .scanner(_, let problem, let mark, _), .parser(_, let problem, let mark, _), .composer(_, let problem, let mark, _):
            return .init(line: mark.line, message: "not valid YAML: \(problem)")
        default:
            return .init(line: nil, message: "not valid YAML: \(error)")
        }
    }

    mutating func readForwardAuth(_ node: Node) -> String? {
        guard let mapping = node.mapping else {
            fail(node, "'forward_auth' must be a mapping with 'path' (and 'enabled')")
            return "auth"
        }
        var path: String? = "auth"
        var enabled = true
        for (key, value) in mapping {
            switch key.string {
            case "path": path = readPrefix(value, setting: "forward_auth.path")
            case "enabled": enabled = readBool(value, setting: "forward_auth.enabled") ?? true
            default: fail(key, "unknown forward_auth setting '\(key.string ?? "?")': the settings are path and enabled")
            }
        }
        if path == "" {
            fail(mapping["path"], "forward_auth.path cannot be the root")
            return nil
        }
        return enabled ? path : nil
    }

    // MARK: Routes

    static let routeSettings = [
        "name", "prefix", "exact", "methods", "answer", "upstream", "strip_prefix", "connect_timeout", "response_timeout",
        "max_body_bytes", "key_id_header", "give_back_on_5xx", "max_idle_connections",
    ]
    static let upstreamOnly = [
        "strip_prefix", "connect_timeout", "response_timeout", "max_body_bytes", "key_id_header", "give_back_on_5xx",
        "max_idle_connections",
    ]

    mutating func readRoute(_ node: Node) -> Route? {
        guard let mapping = node.mapping else {
            fail(node, "a route must be a mapping with name, prefix and either answer or upstream")
            return nil
        }
        let before = problems.count
        for key in mapping.keys where !Self.routeSettings.contains(key.string ?? "") {
            fail(key, "unknown route setting '\(key.string ?? "?")': the settings are \(Self.routeSettings.joined(separator: ", "))")
        }
        guard let nameNode = mapping["name"], let name = readName(nameNode) else {
            if mapping["name"] == nil { fail(node, "a route needs a 'name' (the API name scopes and limits use)") }
            return nil
        }
        let prefix: String
        if let prefixNode = mapping["prefix"] {
            prefix = readPrefix(prefixNode, setting: "prefix") ?? name
        } else {
            prefix = name
        }
        let exact = mapping["exact"].flatMap { readBool($0, setting: "exact") } ?? false
        var methods: [HTTPMethod]? = nil
        if let methodsNode = mapping["methods"] { methods = readMethods(methodsNode) }

        let action: Route.Action
        switch (mapping["answer"], mapping["upstream"]) {
        case (let answer?, nil):
            for key in mapping.keys where Self.upstreamOnly.contains(key.string ?? "") {
                fail(key, "'\(key.string ?? "?")' applies to upstream routes only; route '\(name)' has a fixed answer")
            }
            guard let fixed = readAnswer(answer) else { return nil }
            action = .fixed(fixed)
            if methods == nil { methods = [.GET, .HEAD] }
        case (nil, let upstreamNode?):
            guard let upstream = readUpstream(upstreamNode, route: mapping) else { return nil }
            action = .upstream(upstream)
        case (nil, nil):
            fail(node, "route '\(name)' needs either 'answer' (a fixed answer) or 'upstream' (a URL to forward to)")
            return nil
        case (_?, let upstreamNode?):
            fail(upstreamNode, "route '\(name)' has both 'answer' and 'upstream': keep one")
            return nil
        }
        guard problems.count == before else { return nil }
        return Route(name: name, prefix: prefix, exact: exact, methods: methods, action: action)
    }

    mutating func readName(_ node: Node) -> String? {
        guard let name = node.scalar?.string, !name.isEmpty else {
            fail(node, "'name' must be a non-empty string")
            return nil
        }
        let allowed = name.utf8.allSatisfy { byte in
            (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte | 0x20) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
                || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "_") || byte == UInt8(ascii: ".")
        }
        guard allowed, name != ".", name != "..", name.utf8.count <= 64 else {
            fail(node, "name '\(name)' must be 1 to 64 letters, digits, '-', '_' or '.' (scopes and limits name it)")
            return nil
        }
        return name
    }

    /// A path prefix: written with a leading `/`, normalized as requests are.
    mutating func readPrefix(_ node: Node, setting: String) -> String? {
        guard let text = node.scalar?.string, text.hasPrefix("/") else {
            fail(node, "'\(setting)' must be a path starting with '/'")
            return nil
        }
        let trimmed = text.count > 1 && text.hasSuffix("/") ? String(text.dropLast()) : text
        guard !trimmed.contains("?"), !trimmed.contains("#"), let normalized = RequestPath.normalize(trimmed) else {
            fail(node, "'\(setting)' \(text) is not a plain path (no dot or empty segments, '%', '?', '#', spaces)")
            return nil
        }
        return normalized
    }

    mutating func readBool(_ node: Node, setting: String) -> Bool? {
        guard let value = node.bool else {
            fail(node, "'\(setting)' must be true or false")
            return nil
        }
        return value
    }

    mutating func readMethods(_ node: Node) -> [HTTPMethod]? {
        guard let sequence = node.sequence, !sequence.isEmpty else {
            fail(node, "'methods' must be a non-empty list such as [GET, POST]")
            return nil
        }
        var methods: [HTTPMethod] = []
        for item in sequence {
            guard let text = item.scalar?.string, !text.isEmpty,
                text.utf8.allSatisfy({ (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains($0) })
            else {
                fail(item, "'\(item.string ?? "?")' is not an HTTP method (write it in capitals: GET, POST, ...)")
                continue
            }
            if text == "CONNECT" {
                fail(item, "CONNECT cannot be routed")
                continue
            }
            let method = HTTPMethod(rawValue: text)
            if !methods.contains(method) { methods.append(method) }
        }
        return methods
    }

    mutating func readAnswer(_ node: Node) -> FixedAnswer? {
        guard let mapping = node.mapping else {
            fail(node, "'answer' must be a mapping with status, content_type and body")
            return nil
        }
        var answer = FixedAnswer(body: "")
        for (key, value) in mapping {
            switch key.string {
            case "status":
                guard let status = value.int, (200...599).contains(status) else {
                    fail(value, "'status' must be a number from 200 to 599")
                    continue
                }
                answer.status = status
            case "content_type":
                guard let text = value.scalar?.string, !text.isEmpty, text.utf8.allSatisfy({ $0 >= 0x20 && $0 < 0x7F }) else {
                    fail(value, "'content_type' must be a media type such as text/plain")
                    continue
                }
                answer.contentType = text
            case "body":
                guard let text = value.scalar?.string else {
                    fail(value, "'body' must be a string")
                    continue
                }
                answer.body = text
            default:
                fail(key, "unknown answer setting '\(key.string ?? "?")': the settings are status, content_type and body")
            }
        }
        return answer
    }

    mutating func readUpstream(_ node: Node, route: Node.Mapping) -> Upstream? {
        guard let text = node.scalar?.string, var url = Optional(Substring(text)) else {
            fail(node, "'upstream' must be a URL such as http://127.0.0.1:8080")
            return nil
        }
        guard url.hasPrefix("http://") else {
            let why =
                url.hasPrefix("https://")
                ? "https upstreams are not supported (put a TLS terminator beside it)" : "it must start with http://"
            fail(node, "upstream \(text): \(why)")
            return nil
        }
        url = url.dropFirst("http://".count)
        let authority = url.prefix { $0 != "/" }
        let path = url.dropFirst(authority.count)
        var host = Substring(authority)
        var port = 80
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else {
                fail(node, "upstream \(text): an IPv6 address needs its closing ']'")
                return nil
            }
            host = authority[authority.index(after: authority.startIndex)..<close]
            let rest = authority[authority.index(after: close)...]
            if rest.hasPrefix(":") {
                guard let value = Int(rest.dropFirst()), (1...65535).contains(value) else {
                    fail(node, "upstream \(text): the port must be a number from 1 to 65535")
                    return nil
                }
                port = value
            }
        } else if let colon = authority.lastIndex(of: ":") {
            host = authority[..<colon]
            guard let value = Int(authority[authority.index(after: colon)...]), (1...65535).contains(value) else {
                fail(node, "upstream \(text): the port must be a number from 1 to 65535")
                return nil
            }
            port = value
        }
        guard !host.isEmpty, !host.contains("@") else {
            fail(node, "upstream \(text) needs a host (and no user name or password)")
            return nil
        }
        guard !path.contains("?"), !path.contains("#") else {
            fail(node, "upstream \(text): the URL may hold a base path but no query or fragment")
            return nil
        }
        var basePath = String(path)
        while basePath.hasSuffix("/") { basePath.removeLast() }

        var upstream = Upstream(host: String(host), port: port, basePath: basePath)
        if let value = route["strip_prefix"] { upstream.stripPrefix = readBool(value, setting: "strip_prefix") ?? false }
        if let value = route["connect_timeout"] { upstream.connectTimeout = readDuration(value, setting: "connect_timeout") ?? .seconds(2) }
        if let value = route["response_timeout"] {
            upstream.responseTimeout = readDuration(value, setting: "response_timeout") ?? .seconds(30)
        }
        if let value = route["max_body_bytes"] {
            if let bytes = value.int, bytes >= 0 {
                upstream.maxBodyBytes = bytes
            } else {
                fail(value, "'max_body_bytes' must be a number of bytes, 0 or more")
            }
        }
        if let value = route["max_idle_connections"] {
            if let count = value.int, (0...1024).contains(count) {
                upstream.maxIdleConnections = count
            } else {
                fail(value, "'max_idle_connections' must be a number from 0 to 1024")
            }
        }
        if let value = route["key_id_header"] {
            if value.scalar?.string == "" || value.null != nil {
                upstream.keyIDHeader = nil
            } else if let name = value.scalar?.string, Self.isToken(name) {
                upstream.keyIDHeader = name
            } else {
                fail(value, "'key_id_header' must be a header name (letters, digits, '-'), or empty to send none")
            }
        }
        if let value = route["give_back_on_5xx"], let giveBack = readBool(value, setting: "give_back_on_5xx") {
            upstream.giveBackOn5xx = giveBack
        }
        return upstream
    }

    static func isToken(_ text: String) -> Bool {
        !text.isEmpty
            && text.utf8.allSatisfy { byte in
                (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte | 0x20) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
                    || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "_")
            }
    }

    /// `500ms`, `2s` or `1m`.
    mutating func readDuration(_ node: Node, setting: String) -> TimeAmount? {
        let text = node.scalar?.string ?? ""
        let (digits, unit): (Substring, Substring) = {
            let digits = text.prefix { $0.isNumber }
            return (digits, text.dropFirst(digits.count))
        }()
        guard let value = Int64(digits), value > 0 else {
            fail(node, "'\(setting)' must be a duration such as 500ms, 2s or 1m")
            return nil
        }
        switch unit {
        case "ms": return .milliseconds(value)
        case "s": return .seconds(value)
        case "m": return .minutes(value)
        default:
            fail(node, "'\(setting)' must be a duration such as 500ms, 2s or 1m")
            return nil
        }
    }

    mutating func checkUnique(_ routes: [(Route, Node)], forwardAuthPath: String?) {
        var names: Set<String> = []
        var prefixes: Set<String> = []
        for (route, node) in routes {
            if !names.insert(route.name).inserted { fail(node, "route name '\(route.name)' is used twice") }
            if !prefixes.insert(route.prefix).inserted { fail(node, "prefix /\(route.prefix) is used by two routes") }
            if route.prefix == "healthz" || route.prefix == "readyz" {
                fail(node, "prefix /\(route.prefix) is the gateway's health path; choose another")
            }
            if let forwardAuthPath, route.prefix == forwardAuthPath {
                fail(node, "prefix /\(route.prefix) is the forward-auth path; move one (forward_auth.path)")
            }
        }
    }
}
