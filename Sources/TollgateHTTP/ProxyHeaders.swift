import NIOCore
import NIOHTTP1
import TollgateCore

/// How a forwarded message's body is framed on the next hop: the gateway re-frames every body
/// it relays (its own `content-length` or chunks), so no hop's framing fields pass through.
enum BodyFraming: Equatable {
    case none
    case length(Int)
    case chunked
    /// Delimited by the connection's close: an answer of unknown length to an HTTP/1.0 client.
    case untilClose
}

/// The head rewriting of forwarding, each direction in one pass over the parsed fields,
/// written straight into the outbound buffer from the spans the parser kept: no field becomes
/// a `String` unless the policy needs its value.
enum ProxyHeaders {
    /// Hop-by-hop fields (RFC 9110 section 7.6.1), never forwarded either way, with the
    /// framing fields the gateway writes itself.
    static func isHopByHopOrFraming(_ head: MessageHead, _ field: MessageHead.Field) -> Bool {
        switch field.name.count {
        case 2: head.name(of: field, is: "te")
        case 7: head.name(of: field, is: "trailer") || head.name(of: field, is: "upgrade")
        case 10: head.name(of: field, is: "connection") || head.name(of: field, is: "keep-alive")
        case 14: head.name(of: field, is: "content-length")
        case 16: head.name(of: field, is: "proxy-connection")
        case 17: head.name(of: field, is: "transfer-encoding")
        case 19: head.name(of: field, is: "proxy-authorization")
        default: false
        }
    }

    /// The lower-cased names a `Connection` field lists beyond `keep-alive` and `close` (what
    /// clients and upstreams send, which name no field to drop); empty almost always.
    static func connectionNamed(_ head: MessageHead) -> [String] {
        var named: [String] = []
        for value in head.values("connection") {
            for name in value.split(separator: ",") {
                let lower = name.trimmingSpaces().lowercased()
                if !lower.isEmpty, lower != "keep-alive", lower != "close" { named.append(lower) }
            }
        }
        return named
    }

    /// Fields in which a proxy tells the next hop who its client was: believed only from a
    /// trusted proxy (`X-Forwarded-For`, `-Host` and `-Proto` are handled on their own).
    static func isForwardingField(_ head: MessageHead, _ field: MessageHead.Field) -> Bool {
        if field.name.count == 9 { return head.name(of: field, is: "forwarded") || head.name(of: field, is: "x-real-ip") }
        return field.name.count > 12 && head.hasPrefix(field.name, "x-forwarded-")
    }

    /// Fields by which an upstream tells a CDN alone how to cache (RFC 9213's
    /// `CDN-Cache-Control`, and the older vendor forms): they would let a shared cache store
    /// a metered answer that `Cache-Control: private` forbids, so they never reach the client.
    static func isTargetedCacheControl(_ head: MessageHead, _ field: MessageHead.Field) -> Bool {
        switch field.name.count {
        case 12: head.name(of: field, is: "edge-control")
        case 17: head.name(of: field, is: "cdn-cache-control") || head.name(of: field, is: "surrogate-control")
        case 28: head.name(of: field, is: "cloudflare-cdn-cache-control")
        default: false
        }
    }

    /// Writes the head that goes upstream for `head`, and returns whether the client asked
    /// for `100-continue`.
    ///
    /// Dropped: hop-by-hop fields and those `Connection` names, the framing fields (the
    /// body is re-framed as `framing`), `Expect`, the key (``KeyFields``), any client-sent
    /// `X-Tollgate-Key-Id` and copy of the route's key id field, and every field whose name
    /// holds `_` (CGI, WSGI, PHP and Rack read `X_Tollgate_Key_Id` as `X-Tollgate-Key-Id`;
    /// nginx drops them too).
    ///
    /// From a peer that is not a trusted proxy (`trustedPeer`), what the client wrote about
    /// itself is replaced by what the gateway sees, as Traefik does: `X-Forwarded-For` is the
    /// peer's address alone, `X-Forwarded-Proto` is `http`, `X-Forwarded-Host` the client's
    /// `Host`, and `Forwarded`, `X-Real-IP` and other `X-Forwarded-*` fields are dropped. From
    /// a trusted proxy they are kept, and the peer is appended to `X-Forwarded-For` (several
    /// fields joined into one list, in order).
    ///
    /// Set: `Host` (the upstream's), `X-Request-Id`, and the key id field when the route names one.
    @discardableResult
    static func writeRequest(
        _ head: MessageHead,
        target: String,
        into out: inout ByteBuffer,
        host: String,
        clientIP: String?,
        trustedPeer: Bool,
        requestID: String,
        keyIDHeader: String?,
        keyID: KeyID?,
        framing: BodyFraming
    ) -> Bool {
        out.writeString(head.method.rawValue)
        out.writeStaticString(" ")
        out.writeString(target)
        out.writeStaticString(" HTTP/1.1\r\n")
        var originalHost: Range<Int>?
        var priorForwardedFor: [Range<Int>] = []
        var trustedForwardedHosts: [Range<Int>] = []
        var trustedForwardedProto: Range<Int>?
        var authorizationSeen = false
        var dropAuthorization = false
        var expectSeen = false
        var expectsContinue = false
        var connectionNamesFields = false
        var kept: [MessageHead.Field] = []
        kept.reserveCapacity(head.fields.count)
        for field in head.fields {
            let value = head.trimmed(field.value)
            switch field.name.count {
            case 4 where head.name(of: field, is: "host"):
                if originalHost == nil { originalHost = value }
                continue
            case 6 where head.name(of: field, is: "expect"):
                if !expectSeen {
                    expectSeen = true
                    expectsContinue = head.equalsIgnoringCase(value, "100-continue")
                }
                continue
            case 10 where head.name(of: field, is: "connection"):
                if !head.equalsIgnoringCase(value, "keep-alive") && !head.equalsIgnoringCase(value, "close") {
                    connectionNamesFields = true
                }
                continue
            case 12 where head.name(of: field, is: "x-request-id"):
                continue
            case 13 where head.name(of: field, is: "authorization"):
                // The key is for the gateway alone: a bearer token (decided by the first
                // field) is never forwarded; another scheme is the upstream's business.
                if !authorizationSeen {
                    authorizationSeen = true
                    dropAuthorization = KeyFields.isBearer(head, value)
                }
                if dropAuthorization { continue }
            case 15 where head.name(of: field, is: "x-forwarded-for"):
                if trustedPeer { priorForwardedFor.append(value) }
                continue
            case 16 where head.name(of: field, is: "x-forwarded-host"):
                if trustedPeer { trustedForwardedHosts.append(value) }
                continue
            case 17 where head.name(of: field, is: "x-forwarded-proto"):
                if trustedPeer, trustedForwardedProto == nil { trustedForwardedProto = value }
                continue
            case 17 where head.name(of: field, is: "x-tollgate-key-id"):
                // A client must not be able to name a key id of its choosing.
                continue
            default:
                if isHopByHopOrFraming(head, field) || KeyFields.isKeyField(head, field) { continue }
            }
            if head.contains(field.name, UInt8(ascii: "_")) { continue }
            if !trustedPeer, isForwardingField(head, field) { continue }
            if let keyIDHeader, head.name(of: field, isText: keyIDHeader) { continue }
            kept.append(MessageHead.Field(name: field.name, value: value))
        }
        let named = connectionNamesFields ? connectionNamed(head) : []
        for field in kept where named.isEmpty || !named.contains(where: { head.name(of: field, isText: $0) }) {
            head.writeField(field, to: &out)
        }
        out.writeStaticString("host: ")
        out.writeString(host)
        out.writeStaticString("\r\n")
        if !priorForwardedFor.isEmpty || clientIP != nil {
            out.writeStaticString("x-forwarded-for: ")
            for (index, span) in priorForwardedFor.enumerated() {
                if index > 0 { out.writeStaticString(", ") }
                head.write(span, to: &out)
            }
            if let clientIP {
                if !priorForwardedFor.isEmpty { out.writeStaticString(", ") }
                out.writeString(clientIP)
            }
            out.writeStaticString("\r\n")
        }
        out.writeStaticString("x-forwarded-proto: ")
        if let trustedForwardedProto { head.write(trustedForwardedProto, to: &out) } else { out.writeStaticString("http") }
        out.writeStaticString("\r\n")
        if !trustedForwardedHosts.isEmpty {
            for span in trustedForwardedHosts {
                out.writeStaticString("x-forwarded-host: ")
                head.write(span, to: &out)
                out.writeStaticString("\r\n")
            }
        } else if let originalHost {
            out.writeStaticString("x-forwarded-host: ")
            head.write(originalHost, to: &out)
            out.writeStaticString("\r\n")
        }
        out.writeStaticString("x-request-id: ")
        out.writeString(requestID)
        out.writeStaticString("\r\n")
        if let keyIDHeader, let keyID {
            out.writeString(keyIDHeader)
            out.writeStaticString(": ")
            out.writeString(keyID.description)
            out.writeStaticString("\r\n")
        }
        writeFraming(framing, to: &out)
        out.writeStaticString("\r\n")
        return expectsContinue
    }

    /// Writes the head that goes to the client for an upstream answer `head`: hop-by-hop
    /// fields and those `Connection` names dropped; the admission's RateLimit fields and the
    /// request id set (replacing the upstream's); `Date` added if the upstream sent none (RFC
    /// 9110 section 6.6.1); the body re-framed as `framing`; `connection` as the connection
    /// goes on.
    ///
    /// The answer was for a key, so no shared cache may store it and hand it to others
    /// uncounted: `Cache-Control` always holds `private` (``privateCacheControl(_:)``), and
    /// CDN-targeted cache fields are dropped.
    static func writeAnswer(
        _ head: MessageHead,
        into out: inout ByteBuffer,
        limits: [LimitStatus],
        requestID: String,
        date: ByteBuffer,
        framing: BodyFraming,
        connection: ConnectionField,
        version: HTTPVersion = .http1_1
    ) {
        let status = HTTPResponseStatus(statusCode: head.status)
        out.writeStaticString(version == .http1_0 ? "HTTP/1.0 " : "HTTP/1.1 ")
        out.writeDecimal(Int64(head.status))
        out.writeStaticString(" ")
        out.writeString(status.reasonPhrase)
        out.writeStaticString("\r\n")
        var cacheControl: [String] = []
        var hasDate = false
        var connectionNamesFields = false
        var kept: [MessageHead.Field] = []
        kept.reserveCapacity(head.fields.count)
        for field in head.fields {
            switch field.name.count {
            case 4 where head.name(of: field, is: "date"):
                hasDate = true
            case 9 where head.name(of: field, is: "ratelimit"):
                if !limits.isEmpty { continue }
            case 10 where head.name(of: field, is: "connection"):
                let value = head.trimmed(field.value)
                if !head.equalsIgnoringCase(value, "keep-alive") && !head.equalsIgnoringCase(value, "close") {
                    connectionNamesFields = true
                }
                continue
            case 12 where head.name(of: field, is: "x-request-id"):
                continue
            case 13 where head.name(of: field, is: "cache-control"):
                cacheControl.append(head.string(head.trimmed(field.value)))
                continue
            case 16 where head.name(of: field, is: "ratelimit-policy"):
                if !limits.isEmpty { continue }
            default:
                if isHopByHopOrFraming(head, field) || isTargetedCacheControl(head, field) { continue }
            }
            kept.append(MessageHead.Field(name: field.name, value: head.trimmed(field.value)))
        }
        let named = connectionNamesFields ? connectionNamed(head) : []
        for field in kept where named.isEmpty || !named.contains(where: { head.name(of: field, isText: $0) }) {
            head.writeField(field, to: &out)
        }
        AnswerEncoder.writeRateLimitFields(limits, to: &out)
        out.writeStaticString("x-request-id: ")
        out.writeString(requestID)
        out.writeStaticString("\r\ncache-control: ")
        out.writeString(privateCacheControl(cacheControl))
        out.writeStaticString("\r\n")
        if !hasDate { out.writeImmutableBuffer(date) }
        writeFraming(framing, to: &out)
        out.writeStaticString(connection.line)
        out.writeStaticString("\r\n")
    }

    static func writeFraming(_ framing: BodyFraming, to out: inout ByteBuffer) {
        switch framing {
        case .none, .untilClose:
            break
        case .length(let length):
            out.writeStaticString("content-length: ")
            out.writeDecimal(Int64(length))
            out.writeStaticString("\r\n")
        case .chunked:
            out.writeStaticString("transfer-encoding: chunked\r\n")
        }
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
    func trimmingSpaces() -> Substring {
        let isText: (Character) -> Bool = { $0 != " " && $0 != "\t" }
        guard let first = firstIndex(where: isText), let last = lastIndex(where: isText) else { return "" }
        return self[first...last]
    }
}
