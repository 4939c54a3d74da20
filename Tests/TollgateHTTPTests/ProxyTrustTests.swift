import Foundation
import NIOCore
import NIOHTTP1
import Testing
import TollgateCore
import TollgateHTTP
import TollgateTestSupport

/// Forwarding as an attacker tries it: what the client wrote must not pass as the gateway's
/// word, a malformed body must not hang anyone, and a request reaches its upstream once.
@Suite struct ProxyTrustTests {
    static func table(upstreamPort: Int, trustedProxies: [IPNetwork] = [], keyIDHeader: String? = "X-Tollgate-Key-Id") -> RouteTable {
        var upstream = Upstream(host: "127.0.0.1", port: upstreamPort, responseTimeout: .seconds(10), maxBodyBytes: 100_000)
        upstream.keyIDHeader = keyIDHeader
        var givingBack = upstream
        givingBack.giveBackOn5xx = true
        let gone = Upstream(host: "127.0.0.1", port: 1, connectTimeout: .seconds(2), giveBackOn5xx: true)
        return RouteTable(
            routes: [
                Route(name: "orders", prefix: "v1/orders", action: .upstream(upstream)),
                Route(name: "flaky", prefix: "flaky", action: .upstream(givingBack)),
                Route(name: "gone", prefix: "gone", action: .upstream(gone)),
            ] + Route.defaults,
            trustedProxies: trustedProxies)
    }

    func withProxy(
        _ kind: GatewayStore = .memory,
        trustedProxies: [IPNetwork] = [],
        keyIDHeader: String? = "X-Tollgate-Key-Id",
        _ body: (Int, UpstreamServer, any KeyStore) async throws -> Void
    ) async throws {
        let upstream = try await UpstreamServer.start()
        let routes = LiveRoutes(Self.table(upstreamPort: upstream.port, trustedProxies: trustedProxies, keyIDHeader: keyIDHeader))
        do {
            try await withGateway(kind, configure: { $0.routes = routes }) { port, store in
                try await makeKey(in: store, limits: ["1000/day"], secret: "k")
                try await body(port, upstream, store)
            }
            await upstream.stop()
        } catch {
            await upstream.stop()
            throw error
        }
    }

    func admitted(_ store: any KeyStore) async throws -> Int64 {
        guard let id = try await store.allKeys().first?.id else { return 0 }
        return try await store.usage(id: id)?.apis.values.reduce(0) { $0 + $1.admitted } ?? 0
    }

    @Test func aClientsForwardingFieldsAreReplacedUnlessItsPeerIsTrusted() async throws {
        let fields = [
            ("token", "k"), ("X-Forwarded-For", "1.2.3.4"), ("X-Real-IP", "1.2.3.4"), ("Forwarded", "for=1.2.3.4"),
            ("X-Forwarded-Proto", "https"), ("X-Forwarded-Host", "evil.example"),
        ]
        try await withProxy { port, _, _ in
            let echo = try await httpRequest(port: port, .GET, "/v1/orders/1", headers: fields).body
            #expect(echo.contains("x-forwarded-for: 127.0.0.1\n"), "\(echo)")
            #expect(!echo.contains("1.2.3.4"), "nothing the client wrote about itself: \(echo)")
            #expect(echo.contains("x-forwarded-proto: http\n"))
            #expect(echo.contains("x-forwarded-host: localhost\n"))
            #expect(!echo.contains("evil.example"))
        }
        try await withProxy(trustedProxies: [IPNetwork("127.0.0.0/8")!]) { port, _, _ in
            let echo = try await httpRequest(port: port, .GET, "/v1/orders/1", headers: fields).body
            #expect(echo.contains("x-forwarded-for: 1.2.3.4, 127.0.0.1\n"), "\(echo)")
            #expect(echo.contains("x-real-ip: 1.2.3.4\n"))
            #expect(echo.contains("forwarded: for=1.2.3.4\n"))
            #expect(echo.contains("x-forwarded-proto: https\n"))
            #expect(echo.contains("x-forwarded-host: evil.example\n"))
        }
    }

    /// Underscore spellings that CGI, WSGI, PHP and Rack read as the gateway's own field.
    @Test(arguments: [nil, "X-Caller"] as [String?])
    func underscoreAndClientKeyIDFieldsNeverReachTheUpstream(keyIDHeader: String?) async throws {
        try await withProxy(keyIDHeader: keyIDHeader) { port, _, _ in
            var fields = [("token", "k"), ("X_Tollgate_Key_Id", "someone-else"), ("X-Tollgate-Key-Id", "forged"), ("X_Caller", "forged")]
            if keyIDHeader != nil { fields.append(("X-Caller", "forged")) }
            let echo = try await httpRequest(port: port, .GET, "/v1/orders/1", headers: fields).body
            #expect(!echo.contains("someone-else") && !echo.contains("forged"), "\(echo)")
            let names = echo.split(separator: "\n").dropFirst().map { $0.prefix { $0 != ":" } }
            #expect(!names.contains { $0.contains("_") }, "no field with an underscore: \(echo)")
        }
    }

    /// A bad chunk-size line: the client is answered `400` at once, the upstream connection
    /// is closed (never ended as if the body were whole, never reused), and nothing hangs.
    @Test(arguments: GatewayStore.allCases)
    func aMalformedChunkedBodyIs400AtOnceAndTheUpstreamIsClosed(kind: GatewayStore) async throws {
        try await withProxy(kind) { port, upstream, store in
            let start = ContinuousClock.now
            let response = try await rawExchange(
                port: port,
                "POST /v1/orders/1 HTTP/1.1\r\nHost: x\r\ntoken: k\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\nmore\r\n",
                timeout: .seconds(10))
            #expect(ContinuousClock.now - start < .seconds(5), "answered at once, not after an upstream timeout")
            #expect(response.hasPrefix("HTTP/1.1 400") && response.contains("bad_request"), "\(response)")
            #expect(response.lowercased().contains("connection: close"))
            // (The upstream connection may not have been open yet: then it never saw the head.)
            #expect(
                try await eventually(timeout: .seconds(10)) { upstream.waiting == 0 },
                "the upstream connection that had the request was closed")
            #expect(upstream.ended == 0, "the upstream never saw the request end")
            // The next request opens a fresh upstream connection and is served.
            #expect(try await httpRequest(port: port, .GET, "/v1/orders/2", headers: [("token", "k")]).status == 200)
            #expect(upstream.ended == 1)
            #expect(try await admitted(store) == 2, "the malformed request was admitted at its head and stays counted")
        }
    }

    /// An answer the gateway cannot relay (a 200 KB header, bytes that are no HTTP) is `502`
    /// after one send, on a new and on a reused upstream connection alike.
    @Test(arguments: ["huge-header", "garbage"])
    func aMalformedAnswerIs502AfterOneSend(endpoint: String) async throws {
        try await withProxy { port, upstream, _ in
            try await TestHTTPConnection.with(port: port) { connection in
                for method in [HTTPMethod.GET, .HEAD, .DELETE] {
                    // A first request leaves an idle connection in the pool; the next reuses it.
                    #expect(try await connection.send(.GET, "/v1/orders/warm", headers: [("token", "k")]).status == 200)
                    let before = upstream.requests
                    let response = try await connection.send(method, "/v1/orders/\(endpoint)", headers: [("token", "k")])
                    #expect(response.status == 502, "\(method) \(endpoint)")
                    #expect(
                        upstream.requests == before + 1, "\(method) \(endpoint) reached the upstream \(upstream.requests - before) times")
                }
            }
        }
    }

    /// HTTP/1.0 knows no chunks: an answer of unknown length is sent as it comes and ends
    /// with the connection.
    @Test func anHTTP10ClientGetsAChunkedAnswerAsPlainBytes() async throws {
        try await withProxy { port, _, _ in
            let response = try await rawExchange(port: port, "GET /v1/orders/chunked HTTP/1.0\r\ntoken: k\r\n\r\n", timeout: .seconds(10))
            let parts = response.components(separatedBy: "\r\n\r\n")
            let head = parts[0].lowercased()
            #expect(head.contains(" 200 "), "\(response)")
            #expect(!head.contains("transfer-encoding"), "\(head)")
            #expect(head.contains("connection: close"))
            #expect(parts.dropFirst().joined(separator: "\r\n\r\n") == "chunked", "the body as plain bytes: \(response)")
            // With a length, a 1.0 client may keep its connection.
            let kept = try await rawExchange(
                port: port, "GET /v1/orders/1 HTTP/1.0\r\ntoken: k\r\nConnection: keep-alive\r\n\r\nGET /api1 HTTP/1.0\r\ntoken: k\r\n\r\n")
            #expect(kept.components(separatedBy: " 200 OK").count - 1 == 2, "\(kept)")
            #expect(kept.lowercased().contains("connection: keep-alive"))
        }
    }

    @Test func aProxiedAnswerCarriesADateAndIsNeverStorableByASharedCache() async throws {
        try await withProxy { port, _, _ in
            let plain = try await httpRequest(port: port, .GET, "/v1/orders/1", headers: [("token", "k")])
            #expect(plain.header("date") != nil, "the upstream sent none: the gateway adds one")
            #expect(plain.header("cache-control") == "private")
            let cacheable = try await httpRequest(port: port, .GET, "/v1/orders/cache-public", headers: [("token", "k")])
            #expect(cacheable.header("cache-control") == "private, max-age=600")
            #expect(cacheable.header("cdn-cache-control") == nil)
        }
    }

    /// On a `give_back_on_5xx` route the 502's text says the unit goes back, not that the
    /// request was counted.
    @Test func aGiveBackRoutesFailureSaysTheUnitGoesBack() async throws {
        try await withProxy { port, _, _ in
            let given = try await httpRequest(port: port, .GET, "/gone", headers: [("token", "k")])
            #expect(given.status == 502 && given.body.contains("given back") && !given.body.contains("was counted"), "\(given.body)")
        }
    }
}
