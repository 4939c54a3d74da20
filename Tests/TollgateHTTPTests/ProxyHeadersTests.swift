import NIOCore
import NIOHTTP1
import Testing
import TollgateCore

@testable import TollgateHTTP

/// The one-pass header rewriting of forwarding, field by field (the live suites in
/// `ProxyTests` check the same through a real upstream).
@Suite struct ProxyHeadersTests {
    /// Parses `text` (a whole head) as llhttp reads it off the wire.
    static func head(_ text: String, kind: LLHTTPParser.Kind) -> MessageHead {
        let parser = LLHTTPParser(kind: kind)
        var buffer = ByteBuffer(string: text)
        while true {
            let (consumed, stop) = parser.execute(buffer)
            buffer.moveReaderIndex(forwardBy: consumed)
            if parser.takeHead() { return parser.head }
            if case .failed(let failure) = stop { fatalError("\(failure) parsing \(text)") }
        }
    }

    static func fields(_ fields: [(String, String)]) -> String {
        fields.map { "\($0.0): \($0.1)\r\n" }.joined()
    }

    /// What goes upstream for a request with `fields`, read back as fields.
    static func forward(
        _ fields: [(String, String)],
        clientIP: String? = "10.0.0.7",
        trustedPeer: Bool = false,
        keyIDHeader: String? = "X-Tollgate-Key-Id",
        keyID: KeyID? = KeyID(rawValue: "key_abc")
    ) -> (headers: HTTPHeaders, expectsContinue: Bool) {
        let head = Self.head("GET /x HTTP/1.1\r\n" + Self.fields(fields) + "\r\n", kind: .request)
        var out = ByteBuffer()
        let expectsContinue = ProxyHeaders.writeRequest(
            head, target: "/x", into: &out, host: "upstream:8080", clientIP: clientIP, trustedPeer: trustedPeer, requestID: "r-1",
            keyIDHeader: keyIDHeader, keyID: keyID, framing: .none)
        return (Self.head(String(buffer: out), kind: .request).headers, expectsContinue)
    }

    /// What goes to the client for an upstream answer with `fields`, read back as fields.
    static func answer(
        _ fields: [(String, String)], close: Bool = false, limits: [LimitStatus] = [], framing: BodyFraming = .length(0)
    ) -> HTTPHeaders {
        let head = Self.head("HTTP/1.1 200 OK\r\n" + Self.fields(fields) + "\r\n", kind: .response)
        var out = ByteBuffer()
        ProxyHeaders.writeAnswer(
            head, into: &out, limits: limits, requestID: "r-1", date: ByteBuffer(string: "date: Tue, 08 Dec 2026 10:00:00 GMT\r\n"),
            framing: framing, connection: close ? .close : .none)
        return Self.head(String(buffer: out), kind: .response).headers
    }

    @Test func theKeyAndHopByHopFieldsNeverGoUpstream() {
        let (headers, expectsContinue) = Self.forward([
            ("Host", "gw.example"), ("TOKEN", "secret-1"), ("X-Api-Key", "secret-2"), ("authorization", "bearer secret-3"),
            ("Connection", "keep-alive, X-Private"), ("X-Private", "p"), ("Keep-Alive", "timeout=5"), ("TE", "trailers"),
            ("Upgrade", "h2c"), ("Proxy-Authorization", "Basic x"), ("Proxy-Connection", "close"), ("Trailer", "x"),
            ("Expect", "100-Continue"), ("x-tollgate-key-id", "forged"), ("X-Custom", "kept"), ("x-custom", "kept too"),
        ])
        #expect(expectsContinue)
        #expect(headers["x-custom"] == ["kept", "kept too"])
        for dropped in [
            "token", "x-api-key", "authorization", "connection", "x-private", "keep-alive", "te", "upgrade", "proxy-authorization",
            "proxy-connection", "trailer", "expect",
        ] {
            #expect(!headers.contains(name: dropped), "\(dropped) is not forwarded")
        }
        #expect(headers["x-tollgate-key-id"] == ["key_abc"], "the key's id, never the client's")
        #expect(headers["host"] == ["upstream:8080"])
        #expect(headers["x-forwarded-host"] == ["gw.example"])
        #expect(headers["x-forwarded-proto"] == ["http"])
        #expect(headers["x-forwarded-for"] == ["10.0.0.7"])
        #expect(headers["x-request-id"] == ["r-1"])
    }

    @Test func anotherAuthorizationSchemeIsTheUpstreamsAndAClientsForwardingFieldsAreReplaced() {
        let (headers, expectsContinue) = Self.forward(
            [
                ("Authorization", "Basic dXNlcjpwYXNz"), ("X-Forwarded-For", "1.2.3.4"), ("X-Forwarded-For", "5.6.7.8"),
                ("X-Forwarded-Proto", "https"), ("X-Forwarded-Host", "evil.example"), ("X-Request-Id", "client-chosen"),
                ("Expect", "something-else"), ("Forwarded", "for=1.2.3.4"), ("X-Real-IP", "1.2.3.4"), ("X-Forwarded-Port", "1"),
                ("X-Forwarded-Uri", "/admin"), ("Host", "gw.example"),
            ],
            keyID: nil
        )
        #expect(!expectsContinue)
        #expect(headers["authorization"] == ["Basic dXNlcjpwYXNz"])
        // From a peer that is not a trusted proxy, only what the gateway saw.
        #expect(headers["x-forwarded-for"] == ["10.0.0.7"])
        #expect(headers["x-forwarded-proto"] == ["http"])
        #expect(headers["x-forwarded-host"] == ["gw.example"])
        for dropped in ["forwarded", "x-real-ip", "x-forwarded-port", "x-forwarded-uri"] {
            #expect(!headers.contains(name: dropped), "\(dropped) from an untrusted peer")
        }
        #expect(headers["x-request-id"] == ["r-1"])
        #expect(!headers.contains(name: "x-tollgate-key-id"), "no key id to send")
    }

    @Test func aTrustedProxysForwardingFieldsAreKeptAndAppendedTo() {
        let (headers, _) = Self.forward(
            [
                ("X-Forwarded-For", "1.2.3.4"), ("X-Forwarded-For", "5.6.7.8"), ("X-Forwarded-Proto", "https"),
                ("X-Forwarded-Host", "public.example"), ("Forwarded", "for=1.2.3.4"), ("X-Real-IP", "1.2.3.4"), ("Host", "gw"),
            ],
            trustedPeer: true
        )
        // Two fields of one name are one list: both kept, in order, the peer last.
        #expect(headers["x-forwarded-for"] == ["1.2.3.4, 5.6.7.8, 10.0.0.7"])
        #expect(headers["x-forwarded-proto"] == ["https"])
        #expect(headers["x-forwarded-host"] == ["public.example"])
        #expect(headers["forwarded"] == ["for=1.2.3.4"])
        #expect(headers["x-real-ip"] == ["1.2.3.4"])
    }

    @Test func withoutAClientAddressAnUntrustedClientsForwardedForIsDropped() {
        let (headers, _) = Self.forward(
            [("X-Forwarded-Host", "a.example"), ("X-Forwarded-For", "1.2.3.4")], clientIP: nil, keyIDHeader: nil)
        #expect(!headers.contains(name: "x-forwarded-host"))
        #expect(!headers.contains(name: "x-forwarded-for"))
        #expect(headers["host"] == ["upstream:8080"])
        #expect(!headers.contains(name: "x-tollgate-key-id"))
    }

    /// CGI, WSGI, PHP and Rack read `X_Tollgate_Key_Id` as `X-Tollgate-Key-Id`; a client's
    /// key id field is removed whatever the route sends the id in.
    @Test(arguments: [nil, "X-Caller", "X-Tollgate-Key-Id"] as [String?])
    func aClientsKeyIDInAnySpellingNeverGoesUpstream(keyIDHeader: String?) {
        let (headers, _) = Self.forward(
            [
                ("X_Tollgate_Key_Id", "someone-else"), ("x-tollgate-key-id", "forged"), ("X-Caller", "forged-custom"),
                ("X_Caller", "forged-under"), ("My_Field", "x"), ("X-Kept", "yes"),
            ],
            keyIDHeader: keyIDHeader)
        #expect(headers["x-kept"] == ["yes"])
        for (name, _) in headers {
            #expect(!name.contains("_"), "\(name) has an underscore")
        }
        #expect(!headers.contains(name: "x-tollgate-key-id") || headers["x-tollgate-key-id"] == ["key_abc"])
        #expect(headers["x-tollgate-key-id"] == (keyIDHeader == "X-Tollgate-Key-Id" ? ["key_abc"] : []))
        // Under another name X-Caller is the client's own field, and passes.
        #expect(headers["x-caller"] == (keyIDHeader == "X-Caller" ? ["key_abc"] : ["forged-custom"]))
    }

    @Test func anAnswerLosesHopByHopFieldsAndCarriesTheAdmissionsFields() {
        let limits = [LimitStatus(policy: "day", quota: 100, windowSeconds: nil, remaining: 99, resetSeconds: nil, isSpent: false)]
        let answer = Self.answer(
            [
                ("Content-Type", "text/plain"), ("Connection", "keep-alive, X-Hop"), ("X-Hop", "h"), ("Keep-Alive", "timeout=5"),
                ("RateLimit", "forged"), ("X-Request-Id", "upstream-id"), ("Transfer-Encoding", "chunked"),
            ], limits: limits, framing: .chunked)
        #expect(answer["content-type"] == ["text/plain"])
        #expect(answer["transfer-encoding"] == ["chunked"], "the gateway frames the body it relays")
        #expect(!answer.contains(name: "connection"))
        #expect(!answer.contains(name: "x-hop"))
        #expect(!answer.contains(name: "keep-alive"))
        #expect(answer["ratelimit"] == ["\"day\";r=99"], "the admission's fields, not the upstream's")
        #expect(answer["ratelimit-policy"] == ["\"day\";q=100"])
        #expect(answer["x-request-id"] == ["r-1"])
        #expect(answer["cache-control"] == ["private"])
        #expect(answer["date"] == ["Tue, 08 Dec 2026 10:00:00 GMT"], "an answer without Date gets one")

        let closing = Self.answer([("Cache-Control", "no-store"), ("RateLimit", "the upstream's own"), ("Date", "theirs")], close: true)
        #expect(closing["cache-control"] == ["private, no-store"], "the upstream's choice stands, kept private")
        #expect(closing["ratelimit"] == ["the upstream's own"], "no admission fields to replace it with")
        #expect(closing["connection"] == ["close"])
        #expect(closing["date"] == ["theirs"])
    }

    /// A metered answer must never be stored by a shared cache and served to callers without
    /// a key: `public` and `s-maxage` never reach the client, `private` always does.
    @Test(arguments: [
        ("public, max-age=600", "private, max-age=600"),
        ("PUBLIC,s-maxage=60, max-age=10", "private, max-age=10"),
        ("private=\"Set-Cookie\", max-age=5", "private, max-age=5"),
        ("no-cache=\"a, public\", must-revalidate", "private, no-cache=\"a, public\", must-revalidate"),
        ("private", "private"),
        ("", "private"),
    ])
    func sharedCachesMayNeverStoreAMeteredAnswer(upstream: String, expected: String) {
        #expect(Self.answer([("Cache-Control", upstream)])["cache-control"] == [expected])
    }

    @Test func cdnTargetedCacheFieldsAreDropped() {
        let answer = Self.answer([
            ("CDN-Cache-Control", "max-age=600"), ("Surrogate-Control", "max-age=600"), ("Cloudflare-CDN-Cache-Control", "max-age=1"),
            ("Edge-Control", "cache-maxage=60"), ("Cache-Control", "public"), ("Cache-Control", "s-maxage=9"),
        ])
        #expect(answer["cache-control"] == ["private"])
        for name in ["cdn-cache-control", "surrogate-control", "cloudflare-cdn-cache-control", "edge-control"] {
            #expect(!answer.contains(name: name), "\(name)")
        }
    }
}
