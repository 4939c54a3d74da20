import NIOHTTP1
import Testing
import TollgateCore

@testable import TollgateHTTP

/// The one-pass header rewriting of forwarding, field by field (the live suites in
/// `ProxyTests` check the same through a real upstream).
@Suite struct ProxyHeadersTests {
    static func forward(
        _ fields: [(String, String)],
        clientIP: String? = "10.0.0.7",
        keyIDHeader: String? = "X-Tollgate-Key-Id",
        keyID: KeyID? = KeyID(rawValue: "key_abc")
    ) -> (headers: HTTPHeaders, expectsContinue: Bool) {
        ProxyHeaders.request(
            HTTPHeaders(fields), host: "upstream:8080", clientIP: clientIP, requestID: "r-1", keyIDHeader: keyIDHeader, keyID: keyID)
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

    @Test func anotherAuthorizationSchemeIsTheUpstreamsAndForwardedFieldsAreReplacedOrAppended() {
        let (headers, expectsContinue) = Self.forward(
            [
                ("Authorization", "Basic dXNlcjpwYXNz"), ("X-Forwarded-For", "1.2.3.4"), ("X-Forwarded-For", "5.6.7.8"),
                ("X-Forwarded-Proto", "https"), ("X-Request-Id", "client-chosen"), ("Expect", "something-else"),
            ],
            keyID: nil
        )
        #expect(!expectsContinue)
        #expect(headers["authorization"] == ["Basic dXNlcjpwYXNz"])
        // Two fields of one name are one list: both kept, in order, the client last.
        #expect(headers["x-forwarded-for"] == ["1.2.3.4, 5.6.7.8, 10.0.0.7"])
        #expect(headers["x-forwarded-proto"] == ["http"])
        #expect(headers["x-request-id"] == ["r-1"])
        #expect(!headers.contains(name: "x-tollgate-key-id"), "no key id to send")
    }

    @Test func withoutAHostOrAClientAddressTheClientsForwardedFieldsStay() {
        let (headers, _) = Self.forward(
            [("X-Forwarded-Host", "a.example"), ("X-Forwarded-For", "1.2.3.4")], clientIP: nil, keyIDHeader: nil)
        #expect(headers["x-forwarded-host"] == ["a.example"])
        #expect(headers["x-forwarded-for"] == ["1.2.3.4"])
        #expect(headers["host"] == ["upstream:8080"])
        #expect(!headers.contains(name: "x-tollgate-key-id"))
    }

    @Test func anAnswerLosesHopByHopFieldsAndCarriesTheAdmissionsFields() {
        let rateLimit = HTTPHeaders([("ratelimit-policy", "\"day\";q=100"), ("ratelimit", "\"day\";r=99")])
        let answer = ProxyHeaders.answer(
            HTTPHeaders([
                ("Content-Type", "text/plain"), ("Connection", "keep-alive, X-Hop"), ("X-Hop", "h"), ("Keep-Alive", "timeout=5"),
                ("RateLimit", "forged"), ("X-Request-Id", "upstream-id"), ("Transfer-Encoding", "chunked"),
            ]),
            rateLimitFields: rateLimit, requestID: "r-1", close: false)
        #expect(answer["content-type"] == ["text/plain"])
        #expect(answer["transfer-encoding"] == ["chunked"], "framing is the encoder's to keep or redo")
        #expect(!answer.contains(name: "connection"))
        #expect(!answer.contains(name: "x-hop"))
        #expect(!answer.contains(name: "keep-alive"))
        #expect(answer["ratelimit"] == ["\"day\";r=99"])
        #expect(answer["ratelimit-policy"] == ["\"day\";q=100"])
        #expect(answer["x-request-id"] == ["r-1"])
        #expect(answer["cache-control"] == ["private"])

        let closing = ProxyHeaders.answer(
            HTTPHeaders([("Cache-Control", "no-store"), ("RateLimit", "the upstream's own")]), rateLimitFields: HTTPHeaders(),
            requestID: "r-2",
            close: true)
        #expect(closing["cache-control"] == ["no-store"], "the upstream's choice stands")
        #expect(closing["ratelimit"] == ["the upstream's own"], "no admission fields to replace it with")
        #expect(closing["connection"] == ["close"])
    }
}
