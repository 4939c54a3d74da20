import NIOHTTP1
import TollgateCore

/// The header rewriting of forwarding, each direction in one pass over the fields.
///
/// `HTTPHeaders.remove(name:)` and `replaceOrAdd` each scan every field with a
/// case-insensitive comparison; the rewrite took about twenty such scans per request and as
/// many per answer, a few per cent of the proxy's CPU (see docs/performance.md, "Proxy").
/// Here each field is looked at once and the result is built in a new `HTTPHeaders`.
enum ProxyHeaders {
    /// Whether the field name `name` is `lower` (ASCII letters, digits and `-` only), ignoring case.
    /// Names are tokens (the decoder refuses anything else), and OR-ing `0x20` folds a token's
    /// letters without making any other token character equal to a letter, digit or `-`.
    @inline(__always)
    static func name(_ name: String, is lower: String) -> Bool {
        name.utf8.count == lower.utf8.count && name.utf8.elementsEqual(lower.utf8) { $0 | 0x20 == $1 | 0x20 }
    }

    /// Hop-by-hop fields (RFC 9110 7.6.1), never forwarded either way.
    static func isHopByHop(_ field: String) -> Bool {
        switch field.utf8.count {
        case 2: name(field, is: "te")
        case 7: name(field, is: "trailer") || name(field, is: "upgrade")
        case 10: name(field, is: "connection") || name(field, is: "keep-alive")
        case 16: name(field, is: "proxy-connection")
        case 19: name(field, is: "proxy-authorization")
        default: false
        }
    }

    /// Whether a `Connection` field's value may name other fields: anything but the usual
    /// `keep-alive` or `close` (what upstreams and clients send), which names none to drop.
    static func namesFields(_ connection: String) -> Bool {
        !(name(connection, is: "keep-alive") || name(connection, is: "close"))
    }

    /// The names a `Connection` field lists (lowercased), beyond the fixed hop-by-hop ones.
    private static func connectionNamed(_ headers: HTTPHeaders) -> [String] {
        headers[canonicalForm: "connection"].map { $0.lowercased() }.filter { !isHopByHop($0) }
    }

    /// Whether `field` starts with `lowerPrefix` (ASCII, ignoring case).
    @inline(__always)
    static func name(_ field: String, startsWith lowerPrefix: String) -> Bool {
        field.utf8.count > lowerPrefix.utf8.count
            && field.utf8.prefix(lowerPrefix.utf8.count).elementsEqual(lowerPrefix.utf8) { $0 | 0x20 == $1 | 0x20 }
    }

    /// Fields in which a proxy tells the next hop who its client was: believed only from a
    /// trusted proxy (`X-Forwarded-For`, `-Host` and `-Proto` are handled on their own).
    static func isForwardingField(_ field: String) -> Bool {
        switch field.utf8.count {
        case 9: name(field, is: "forwarded") || name(field, is: "x-real-ip")
        default: name(field, startsWith: "x-forwarded-")
        }
    }

    /// What goes upstream for a request's fields, and whether the client asked for `100-continue`.
    ///
    /// Dropped: hop-by-hop fields and those `Connection` names, `Expect`, the key (a bearer
    /// `Authorization`, `X-API-Key`, `token`), any client-sent `X-Tollgate-Key-Id` and copy
    /// of the route's key id field, and every field whose name holds `_` (CGI, WSGI, PHP and
    /// Rack read `X_Tollgate_Key_Id` as `X-Tollgate-Key-Id`; nginx drops them too).
    ///
    /// From a peer that is not a trusted proxy (`trustedPeer`), what the client wrote about
    /// itself is replaced by what the gateway sees, as Traefik does: `X-Forwarded-For` is
    /// the peer's address alone, `X-Forwarded-Proto` is `http`, `X-Forwarded-Host` the
    /// client's `Host`, and `Forwarded`, `X-Real-IP` and other `X-Forwarded-*` fields are
    /// dropped. From a trusted proxy they are kept, and the peer is appended to
    /// `X-Forwarded-For` (several fields joined into one list, in order).
    ///
    /// Set: `Host` (the upstream's), `X-Request-Id`, and the key id field when the route names one.
    static func request(
        _ headers: HTTPHeaders,
        host: String,
        clientIP: String?,
        trustedPeer: Bool,
        requestID: String,
        keyIDHeader: String?,
        keyID: KeyID?
    ) -> (headers: HTTPHeaders, expectsContinue: Bool) {
        var out = HTTPHeaders()
        out.reserveCapacity(headers.count + 5)
        var originalHost: String?
        var priorForwardedFor: [String] = []
        var trustedForwardedHosts: [String] = []
        var trustedForwardedProto: String?
        var authorizationSeen = false
        var dropAuthorization = false
        var expectSeen = false
        var expectsContinue = false
        var connectionNamesFields = false
        for (field, value) in headers {
            switch field.utf8.count {
            case 4 where name(field, is: "host"):
                if originalHost == nil { originalHost = value }
                continue
            case 5 where name(field, is: "token"):
                continue
            case 6 where name(field, is: "expect"):
                if !expectSeen {
                    expectSeen = true
                    expectsContinue = name(value, is: "100-continue")
                }
                continue
            case 9 where name(field, is: "x-api-key"):
                continue
            case 10 where name(field, is: "connection"):
                if namesFields(value) { connectionNamesFields = true }
                continue
            case 12 where name(field, is: "x-request-id"):
                continue
            case 13 where name(field, is: "authorization"):
                // The key is for the gateway alone: a bearer token (decided by the first
                // field) is never forwarded; another scheme is the upstream's business.
                if !authorizationSeen {
                    authorizationSeen = true
                    dropAuthorization = value.utf8.prefix(7).elementsEqual("bearer ".utf8) { $0 | 0x20 == $1 }
                }
                if dropAuthorization { continue }
            case 15 where name(field, is: "x-forwarded-for"):
                if trustedPeer { priorForwardedFor.append(value) }
                continue
            case 16 where name(field, is: "x-forwarded-host"):
                if trustedPeer { trustedForwardedHosts.append(value) }
                continue
            case 17 where name(field, is: "x-forwarded-proto"):
                if trustedPeer, trustedForwardedProto == nil { trustedForwardedProto = value }
                continue
            case 17 where name(field, is: "x-tollgate-key-id"):
                // A client must not be able to name a key id of its choosing.
                continue
            default:
                if isHopByHop(field) { continue }
            }
            if field.utf8.contains(UInt8(ascii: "_")) { continue }
            if !trustedPeer, isForwardingField(field) { continue }
            if let keyIDHeader, name(field, is: keyIDHeader) { continue }
            out.add(name: field, value: value)
        }
        if connectionNamesFields {
            for named in connectionNamed(headers) { out.remove(name: named) }
        }
        out.add(name: "host", value: host)
        if let clientIP { priorForwardedFor.append(clientIP) }
        if !priorForwardedFor.isEmpty { out.add(name: "x-forwarded-for", value: priorForwardedFor.joined(separator: ", ")) }
        out.add(name: "x-forwarded-proto", value: trustedForwardedProto ?? "http")
        if !trustedForwardedHosts.isEmpty {
            for value in trustedForwardedHosts { out.add(name: "x-forwarded-host", value: value) }
        } else if let originalHost {
            out.add(name: "x-forwarded-host", value: originalHost)
        }
        out.add(name: "x-request-id", value: requestID)
        if let keyIDHeader, let keyID { out.add(name: keyIDHeader, value: keyID.description) }
        return (out, expectsContinue)
    }

    /// Fields by which an upstream tells a CDN alone how to cache (RFC 9213's
    /// `CDN-Cache-Control`, and the older vendor forms): they would let a shared cache store
    /// a metered answer that `Cache-Control: private` forbids, so they never reach the client.
    static func isTargetedCacheControl(_ field: String) -> Bool {
        switch field.utf8.count {
        case 12: name(field, is: "edge-control")
        case 17: name(field, is: "cdn-cache-control") || name(field, is: "surrogate-control")
        case 28: name(field, is: "cloudflare-cdn-cache-control")
        default: false
        }
    }

    /// What goes to the client for an upstream answer's fields: hop-by-hop fields and those
    /// `Connection` names dropped; the admission's RateLimit fields and the request id set
    /// (replacing the upstream's); `Date` added if the upstream sent none (RFC 9110 section
    /// 6.6.1); `Connection: close` if `close`.
    ///
    /// The answer was for a key, so no shared cache may store it and hand it to others
    /// uncounted: `Cache-Control` always holds `private` (``privateCacheControl(_:)``), and
    /// CDN-targeted cache fields are dropped.
    static func answer(_ headers: HTTPHeaders, rateLimitFields: HTTPHeaders, requestID: String, close: Bool, date: String) -> HTTPHeaders {
        var out = HTTPHeaders()
        out.reserveCapacity(headers.count + rateLimitFields.count + 4)
        var cacheControl: [String] = []
        var hasDate = false
        var connectionNamesFields = false
        for (field, value) in headers {
            switch field.utf8.count {
            case 4 where name(field, is: "date"):
                hasDate = true
            case 10 where name(field, is: "connection"):
                if namesFields(value) { connectionNamesFields = true }
                continue
            case 12 where name(field, is: "x-request-id"):
                continue
            case 13 where name(field, is: "cache-control"):
                cacheControl.append(value)
                continue
            default:
                if isHopByHop(field) || isTargetedCacheControl(field) { continue }
            }
            if !rateLimitFields.isEmpty, rateLimitFields.contains(name: field) { continue }
            out.add(name: field, value: value)
        }
        if connectionNamesFields {
            for named in connectionNamed(headers) { out.remove(name: named) }
        }
        for field in rateLimitFields { out.add(name: field.name, value: field.value) }
        out.add(name: "x-request-id", value: requestID)
        out.add(name: "cache-control", value: privateCacheControl(cacheControl))
        if !hasDate { out.add(name: "date", value: date) }
        if close { out.add(name: "connection", value: "close") }
        return out
    }

    /// The upstream's `Cache-Control` directives made safe for an answer to a key: `private`
    /// first, then every directive the upstream sent but `public`, `s-maxage` and `private`
    /// itself (a qualified `private="Set-Cookie"` would let a shared cache store the rest).
    /// Quoted strings are kept whole; `no-store`, `max-age` and the others pass unchanged.
    static func privateCacheControl(_ values: [String]) -> String {
        var result = "private"
        for value in values {
            for directive in directives(value) {
                let name = directive.prefix { $0 != "=" }.lowercased()
                if name == "public" || name == "s-maxage" || name == "private" { continue }
                result += ", "
                result += directive
            }
        }
        return result
    }

    /// A list field's members: split at commas outside quoted strings, spaces trimmed, empty ones dropped.
    static func directives(_ value: String) -> [Substring] {
        var members: [Substring] = []
        var start = value.startIndex
        var inQuotes = false
        var escaped = false
        var index = value.startIndex
        func take(_ end: String.Index) {
            let member = value[start..<end].trimmingSpaces()
            if !member.isEmpty { members.append(member) }
        }
        while index < value.endIndex {
            let character = value[index]
            if escaped {
                escaped = false
            } else if inQuotes && character == "\\" {
                escaped = true
            } else if character == "\"" {
                inQuotes.toggle()
            } else if character == "," && !inQuotes {
                take(index)
                start = value.index(after: index)
            }
            index = value.index(after: index)
        }
        take(value.endIndex)
        return members
    }
}

extension Substring {
    /// Without leading and trailing spaces and tabs (HTTP's optional whitespace).
    fileprivate func trimmingSpaces() -> Substring {
        let isText: (Character) -> Bool = { $0 != " " && $0 != "\t" }
        guard let first = firstIndex(where: isText), let last = lastIndex(where: isText) else { return "" }
        return self[first...last]
    }
}
