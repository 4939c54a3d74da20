import NIOCore

extension RESPConfiguration {
    /// Parses `redis://[[user]:password@]HOST[:PORT][/DB][?timeout=MS&connect_timeout=MS&pool=N&protocol=2|3]`.
    ///
    /// Deployments usually hand the server address over as one URL, but keep the password
    /// in a separate secret: pass that as `password`, which wins over one in the URL.
    /// User and password may be percent-encoded. Errors name the offending part, never its
    /// value when that value could be the password.
    ///
    /// - Parameters:
    ///   - url: the URL text.
    ///   - password: a password from elsewhere (e.g. an environment variable); overrides the URL's.
    ///   - base: defaults for everything the URL does not set.
    public init(url: String, password: String? = nil, base: RESPConfiguration = RESPConfiguration()) throws(RESPError) {
        var config = base
        let scheme = "redis://"
        guard url.hasPrefix(scheme) else {
            if url.hasPrefix("rediss://") { throw RESPError(.invalidURL, "TLS (rediss://) is not supported") }
            throw RESPError(.invalidURL, "scheme must be redis://")
        }
        var rest = Substring(url.dropFirst(scheme.count))

        // Split off the user info first, at the last "@": a password may contain "/", "?" or
        // ":" that would otherwise be mistaken for later parts and echoed in an error.
        if let at = rest.lastIndex(of: "@") {
            let userInfo = rest[..<at]
            rest = rest[rest.index(after: at)...]
            if let colon = userInfo.firstIndex(of: ":") {
                let user = userInfo[..<colon]
                let pass = userInfo[userInfo.index(after: colon)...]
                if !user.isEmpty {
                    guard let u = Self.percentDecode(user) else { throw RESPError(.invalidURL, "invalid percent-encoding in user name") }
                    config.username = u
                }
                if !pass.isEmpty {
                    guard let p = Self.percentDecode(pass) else { throw RESPError(.invalidURL, "invalid percent-encoding in password") }
                    config.password = p
                }
            } else if !userInfo.isEmpty {
                guard let u = Self.percentDecode(userInfo) else { throw RESPError(.invalidURL, "invalid percent-encoding in user name") }
                config.username = u
            }
        }
        var query: Substring?
        if let q = rest.firstIndex(of: "?") {
            query = rest[rest.index(after: q)...]
            rest = rest[..<q]
        }
        var path: Substring?
        if let slash = rest.firstIndex(of: "/") {
            path = rest[rest.index(after: slash)...]
            rest = rest[..<slash]
        }
        let hostPort = rest

        // Host, optionally [IPv6], then optional :port.
        var portText: Substring?
        if hostPort.hasPrefix("[") {
            guard let close = hostPort.firstIndex(of: "]") else { throw RESPError(.invalidURL, "unterminated IPv6 host") }
            config.host = String(hostPort[hostPort.index(after: hostPort.startIndex)..<close])
            let after = hostPort[hostPort.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { throw RESPError(.invalidURL, "unexpected text after IPv6 host") }
                portText = after.dropFirst()
            }
        } else if let colon = hostPort.firstIndex(of: ":") {
            config.host = String(hostPort[..<colon])
            portText = hostPort[hostPort.index(after: colon)...]
        } else {
            config.host = String(hostPort)
        }
        guard !config.host.isEmpty else { throw RESPError(.invalidURL, "host is missing") }
        if let portText {
            guard let port = Int(portText), (1...65535).contains(port) else {
                throw RESPError(.invalidURL, "port '\(portText)' is not a number in 1...65535")
            }
            config.port = port
        }

        if let path, !path.isEmpty {
            guard let db = Int(path), db >= 0 else { throw RESPError(.invalidURL, "database '\(path)' is not a non-negative integer") }
            config.database = db
        }

        if let query, !query.isEmpty {
            for item in query.split(separator: "&", omittingEmptySubsequences: true) {
                let parts = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                let key = parts[0]
                guard parts.count == 2 else { throw RESPError(.invalidURL, "query parameter '\(key)' has no value") }
                let value = parts[1]
                func positive() throws(RESPError) -> Int {
                    guard let n = Int(value), n > 0 else {
                        throw RESPError(.invalidURL, "query parameter '\(key)' must be a positive integer, got '\(value)'")
                    }
                    return n
                }
                switch key {
                case "timeout": config.commandTimeout = .milliseconds(Int64(try positive()))
                case "connect_timeout": config.connectTimeout = .milliseconds(Int64(try positive()))
                case "pool": config.poolSize = try positive()
                case "protocol":
                    guard let v = Int(value), let version = RESPProtocolVersion(rawValue: v) else {
                        throw RESPError(.invalidURL, "query parameter 'protocol' must be 2 or 3, got '\(value)'")
                    }
                    config.protocolVersion = version
                default:
                    throw RESPError(.invalidURL, "unknown query parameter '\(key)'")
                }
            }
        }
        if let password { config.password = password }
        self = config
    }

    private static func percentDecode(_ text: Substring) -> String? {
        guard text.contains("%") else { return String(text) }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(text.utf8.count)
        var it = text.utf8.makeIterator()
        while let b = it.next() {
            if b == UInt8(ascii: "%") {
                guard let h = it.next().flatMap(Self.hexValue), let l = it.next().flatMap(Self.hexValue) else { return nil }
                bytes.append(h << 4 | l)
            } else {
                bytes.append(b)
            }
        }
        return String(validating: bytes, as: UTF8.self)
    }

    private static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}
