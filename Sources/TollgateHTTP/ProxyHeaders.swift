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

    /// What goes upstream for a request's fields, and whether the client asked for `100-continue`.
    ///
    /// Dropped: hop-by-hop fields and those `Connection` names, `Expect`, the key (a bearer
    /// `Authorization`, `X-API-Key`, `token`) and any client-sent key id field. Set: `Host`
    /// (the upstream's), `X-Forwarded-For` (the client appended to those sent, joined into one
    /// list in order, as several fields of one name mean),
    /// `X-Forwarded-Proto`, `X-Forwarded-Host` (the client's `Host`, when it sent one),
    /// `X-Request-Id`, and the key id field when the route names one.
    static func request(
        _ headers: HTTPHeaders,
        host: String,
        clientIP: String?,
        requestID: String,
        keyIDHeader: String?,
        keyID: KeyID?
    ) -> (headers: HTTPHeaders, expectsContinue: Bool) {
        var out = HTTPHeaders()
        out.reserveCapacity(headers.count + 5)
        var originalHost: String?
        var priorForwardedFor: [String] = []
        var clientForwardedHosts: [String] = []
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
                guard clientIP != nil else { break }
                priorForwardedFor.append(value)
                continue
            case 16 where name(field, is: "x-forwarded-host"):
                clientForwardedHosts.append(value)
                continue
            case 17 where name(field, is: "x-forwarded-proto"):
                continue
            default:
                if isHopByHop(field) { continue }
            }
            // A client must not be able to name a key id of its choosing.
            if let keyIDHeader, name(field, is: keyIDHeader) { continue }
            out.add(name: field, value: value)
        }
        if connectionNamesFields {
            for named in connectionNamed(headers) { out.remove(name: named) }
        }
        out.add(name: "host", value: host)
        if let clientIP {
            priorForwardedFor.append(clientIP)
            out.add(name: "x-forwarded-for", value: priorForwardedFor.joined(separator: ", "))
        }
        out.add(name: "x-forwarded-proto", value: "http")
        if let originalHost {
            out.add(name: "x-forwarded-host", value: originalHost)
        } else {
            for value in clientForwardedHosts { out.add(name: "x-forwarded-host", value: value) }
        }
        out.add(name: "x-request-id", value: requestID)
        if let keyIDHeader, let keyID { out.add(name: keyIDHeader, value: keyID.description) }
        return (out, expectsContinue)
    }

    /// What goes to the client for an upstream answer's fields: hop-by-hop fields and those
    /// `Connection` names dropped; the admission's RateLimit fields and the request id set
    /// (replacing the upstream's); `Cache-Control: private` unless the upstream chose;
    /// `Connection: close` if `close`.
    static func answer(_ headers: HTTPHeaders, rateLimitFields: HTTPHeaders, requestID: String, close: Bool) -> HTTPHeaders {
        var out = HTTPHeaders()
        out.reserveCapacity(headers.count + rateLimitFields.count + 3)
        var hasCacheControl = false
        var connectionNamesFields = false
        for (field, value) in headers {
            switch field.utf8.count {
            case 10 where name(field, is: "connection"):
                if namesFields(value) { connectionNamesFields = true }
                continue
            case 12 where name(field, is: "x-request-id"):
                continue
            case 13 where name(field, is: "cache-control"):
                hasCacheControl = true
            default:
                if isHopByHop(field) { continue }
            }
            if !rateLimitFields.isEmpty, rateLimitFields.contains(name: field) { continue }
            out.add(name: field, value: value)
        }
        if connectionNamesFields {
            for named in connectionNamed(headers) { out.remove(name: named) }
        }
        for field in rateLimitFields { out.add(name: field.name, value: field.value) }
        out.add(name: "x-request-id", value: requestID)
        // The answer was for a key: a shared cache must not hand it to others uncounted.
        if !hasCacheControl { out.add(name: "cache-control", value: "private") }
        if close { out.add(name: "connection", value: "close") }
        return out
    }
}
