import Foundation
import NIOCore
import NIOHTTP1
import Testing
import TollgateCore
import TollgateHTTP
import TollgateTestSupport

/// Upstream routes on a live data plane, forwarding to a live upstream on a free port.
@Suite struct ProxyTests {
    /// A route table with one upstream route per setting the tests need.
    static func routes(upstreamPort: Int, responseTimeout: TimeAmount = .seconds(5)) -> LiveRoutes {
        let upstream = Upstream(host: "127.0.0.1", port: upstreamPort, responseTimeout: responseTimeout, maxBodyBytes: 1000)
        var stripped = upstream
        stripped.stripPrefix = true
        stripped.basePath = "/base"
        return LiveRoutes(
            RouteTable(
                routes: [
                    Route(name: "orders", prefix: "v1/orders", action: .upstream(stripped)),
                    Route(name: "kept", prefix: "kept", methods: [.GET, .POST], action: .upstream(upstream)),
                    Route(
                        name: "ping", prefix: "ping", methods: [.GET],
                        action: .fixed(FixedAnswer(status: 201, contentType: "application/json", body: "{}"))),
                ] + Route.defaults)
        )
    }

    func withProxy<T: Sendable>(
        responseTimeout: TimeAmount = .seconds(5),
        upstreamPort: Int? = nil,
        _ body: (Int, UpstreamServer, MemoryKeyStore) async throws -> T
    ) async throws -> T {
        let upstream = try await UpstreamServer.start()
        let store = MemoryKeyStore()
        let port = upstreamPort ?? upstream.port
        do {
            let result = try await withDataPlane(
                store: store, configure: { $0.routes = Self.routes(upstreamPort: port, responseTimeout: responseTimeout) }
            ) { port in try await body(port, upstream, store) }
            await upstream.stop()
            return result
        } catch {
            await upstream.stop()
            throw error
        }
    }

    @Test func forwardsMethodPathQueryHeadersAndBodyButNeverTheKey() async throws {
        try await withProxy { port, upstream, store in
            let key = try await makeKey(in: store, limits: ["100/day"], secret: "proxy-key").key
            let response = try await TestHTTPConnection.with(port: port) { connection in
                try await connection.send(
                    .POST, "/v1/orders/5?x=1&y=%20",
                    headers: [("token", "proxy-key"), ("X-Custom", "kept"), ("X-Tollgate-Key-Id", "forged"), ("Connection", "keep-alive")],
                    body: "hello"
                )
            }
            #expect(response.status == 200)
            let echo = response.body
            #expect(echo.hasPrefix("POST /base/5?x=1&y=%20\n"), "prefix stripped, base path put before, query kept: \(echo)")
            #expect(echo.contains("x-custom: kept\n"))
            #expect(echo.contains("body-bytes: 5\n"))
            #expect(echo.contains("x-forwarded-for: 127.0.0.1\n"))
            #expect(echo.contains("x-forwarded-proto: http\n"))
            #expect(echo.contains("x-forwarded-host: localhost\n"))
            #expect(echo.contains("x-tollgate-key-id: \(key.id)\n"))
            #expect(!echo.contains("forged"), "a client cannot name its own key id")
            #expect(!echo.contains("proxy-key"), "the key never goes upstream")
            #expect(!echo.contains("token:"))
            let requestID = try #require(response.header("x-request-id"))
            #expect(echo.contains("x-request-id: \(requestID)\n"))
            #expect(response.header("x-upstream") == "yes")
            #expect(response.header("ratelimit-policy") == "\"day\";q=100;w=86400")
            #expect(response.header("ratelimit")?.hasPrefix("\"day\";r=99") == true)

            let bearer = try await httpRequest(port: port, .GET, "/kept/a/b", headers: [("Authorization", "Bearer proxy-key")])
            #expect(bearer.body.hasPrefix("GET /kept/a/b\n"), "the prefix is kept unless stripped")
            #expect(!bearer.body.contains("authorization"))
            #expect(upstream.requests == 2)
        }
    }

    @Test func refusalsNeverReachTheUpstream() async throws {
        try await withProxy { port, upstream, store in
            try await makeKey(in: store, scopes: ["api1"], secret: "narrow")
            try await makeKey(in: store, limits: ["orders*:1/day"], secret: "once")
            #expect(try await get(port, "/v1/orders/1").problemCode == "missing_api_key")
            #expect(try await get(port, "/v1/orders/1", key: "narrow").problemCode == "scope_denied")
            #expect(try await get(port, "/v1/orders/1", key: "once").status == 200)
            let spent = try await get(port, "/v1/orders/2", key: "once")
            #expect(spent.status == 429 && spent.header("retry-after") != nil)
            let wrongMethod = try await httpRequest(port: port, .DELETE, "/kept", headers: [("token", "once")])
            #expect(wrongMethod.status == 405 && wrongMethod.header("allow") == "GET, POST")
            #expect(upstream.requests == 1, "only the admitted request was forwarded")
        }
    }

    /// A refused request without a body keeps its connection: the next request on it is
    /// answered (a refusal made at the head used to close it, racing a client still writing
    /// the request's end).
    @Test func aRefusedRequestWithoutABodyKeepsTheConnection() async throws {
        try await withProxy { port, upstream, store in
            try await makeKey(in: store, limits: ["100/day"], secret: "kept-open")
            try await TestHTTPConnection.with(port: port) { connection in
                let refused = try await connection.send(.GET, "/v1/orders/1")
                #expect(refused.problemCode == "missing_api_key")
                #expect(refused.header("connection") != "close")
                let admitted = try await connection.send(.GET, "/v1/orders/1", headers: [("token", "kept-open")])
                #expect(admitted.status == 200)
            }
            #expect(upstream.requests == 1)
        }
    }

    @Test func scopesAndLimitsSeeTheRouteName() async throws {
        try await withProxy { port, _, store in
            try await makeKey(in: store, scopes: ["orders*"], limits: ["orders*:2/day"], secret: "orders-only")
            #expect(try await get(port, "/v1/orders/1", key: "orders-only").status == 200)
            #expect(try await get(port, "/v1/orders", key: "orders-only").status == 200)
            #expect(try await get(port, "/v1/orders/3", key: "orders-only").status == 429)
            #expect(try await get(port, "/kept", key: "orders-only").status == 403)
            let id = try #require(try await store.allKeys().first?.id)
            let usage = try #require(try await store.usage(id: id))
            #expect(usage.apis["orders"]?.admitted == 2)
            #expect(usage.apis["orders"]?.quotaExceeded == 1)
        }
    }

    @Test func aFixedRouteAnswersItsStatusAndTypeAndRefusesABody() async throws {
        try await withProxy { port, _, store in
            try await makeKey(in: store, secret: "k")
            let ping = try await get(port, "/ping", key: "k")
            #expect(ping.status == 201 && ping.header("content-type") == "application/json" && ping.body == "{}")
            let withBody = try await TestHTTPConnection.with(port: port) { connection in
                try await connection.send(.GET, "/ping", headers: [("token", "k")], body: "x")
            }
            #expect(withBody.problemCode == "body_not_allowed")
        }
    }

    @Test func aBodyAboveTheRoutesLimitIs413AndNotForwarded() async throws {
        try await withProxy { port, upstream, store in
            try await makeKey(in: store, secret: "k")
            let large = try await TestHTTPConnection.with(port: port) { connection in
                try await connection.send(.POST, "/kept", headers: [("token", "k")], body: String(repeating: "z", count: 1001))
            }
            #expect(large.status == 413 && large.problemCode == "body_too_large")
            #expect(large.header("connection") == "close")
            let chunked = try await rawExchange(
                port: port,
                "POST /kept HTTP/1.1\r\nHost: x\r\ntoken: k\r\nTransfer-Encoding: chunked\r\n\r\n400\r\n\(String(repeating: "a", count: 1024))\r\n0\r\n\r\n"
            )
            #expect(chunked.contains("413") && chunked.contains("body_too_large"), "\(chunked.prefix(80))")
            #expect(upstream.requests == 0 || !chunked.contains("200 OK"))
        }
    }

    @Test func anUpstreamThatIsDownIs502() async throws {
        let closed = try await UpstreamServer.start()
        let deadPort = closed.port
        await closed.stop()
        try await withProxy(upstreamPort: deadPort) { port, _, store in
            try await makeKey(in: store, limits: ["10/day"], secret: "k")
            let response = try await get(port, "/kept", key: "k")
            #expect(response.status == 502 && response.problemCode == "upstream_unavailable")
            #expect(response.header("content-type") == "application/problem+json")
            let id = try #require(try await store.allKeys().first?.id)
            let usage = try #require(try await store.usage(id: id))
            #expect(usage.apis["kept"]?.admitted == 1, "counted when admitted, before forwarding")
        }
    }

    @Test func aSlowUpstreamIs504() async throws {
        try await withProxy(responseTimeout: .seconds(1)) { port, _, store in
            try await makeKey(in: store, secret: "k")
            let response = try await get(port, "/kept/slow?ms=3000", key: "k")
            #expect(response.status == 504 && response.problemCode == "upstream_timeout")
            #expect(try await get(port, "/kept/slow?ms=1", key: "k").status == 200)
        }
    }

    @Test func upstreamStatusesAndHeadPassThrough() async throws {
        try await withProxy { port, _, store in
            try await makeKey(in: store, secret: "k")
            #expect(try await get(port, "/kept/status/503", key: "k").status == 503)
            #expect(try await get(port, "/kept/status/404", key: "k").body == "status 404")
            let head = try await httpRequest(port: port, .HEAD, "/v1/orders/x", headers: [("token", "k")])
            #expect(head.status == 200 && head.body.isEmpty)
        }
    }

    @Test func keepAliveConnectionsToTheUpstreamAreReused() async throws {
        try await withProxy { port, upstream, store in
            try await makeKey(in: store, secret: "k")
            try await TestHTTPConnection.with(port: port) { connection in
                for index in 0..<20 {
                    let response = try await connection.send(.GET, "/kept/\(index)", headers: [("token", "k")])
                    #expect(response.status == 200)
                }
            }
            for index in 0..<10 { #expect(try await get(port, "/kept/again/\(index)", key: "k").status == 200) }
            #expect(upstream.requests == 30)
            // One connection per event loop at most: the pool keeps them between requests.
            #expect(upstream.connections <= System.coreCount, "\(upstream.connections) upstream connections for 30 requests")
        }
    }

    @Test func aPooledConnectionClosedByTheUpstreamIsRetriedOnceOnANewOne() async throws {
        try await withProxy { port, upstream, store in
            try await makeKey(in: store, secret: "k")
            try await TestHTTPConnection.with(port: port) { connection in
                #expect(try await connection.send(.GET, "/kept/drop-next", headers: [("token", "k")]).status == 200)
                // Sent on the pooled connection, which the upstream drops: answered from a new one.
                let retried = try await connection.send(.GET, "/kept/after", headers: [("token", "k")])
                #expect(retried.status == 200 && retried.body.hasPrefix("GET /kept/after\n"))
                #expect(try await connection.send(.POST, "/kept/drop-next", headers: [("token", "k")], body: "x").status == 200)
                // A request with a body cannot be sent twice: 502.
                let notRetried = try await connection.send(.POST, "/kept/after", headers: [("token", "k")], body: "x")
                #expect(notRetried.status == 502 && notRetried.problemCode == "upstream_unavailable")
            }
            #expect(upstream.connections == 2, "the drop-next connection, then the one the retry opened")
        }
    }

    @Test func pipelinedRequestsToAnUpstreamAreAnsweredInOrder() async throws {
        try await withProxy { port, _, store in
            try await makeKey(in: store, secret: "k")
            var request = ""
            for index in 0..<5 { request += "GET /kept/\(index) HTTP/1.1\r\nHost: x\r\ntoken: k\r\n\r\n" }
            request += "GET /api1 HTTP/1.1\r\nHost: x\r\ntoken: k\r\nConnection: close\r\n\r\n"
            let text = try await rawExchange(port: port, request)
            var last = text.startIndex
            for index in 0..<5 {
                let range = try #require(text.range(of: "GET /kept/\(index)\n", range: last..<text.endIndex), "answer \(index) in order")
                last = range.upperBound
            }
            #expect(text.hasSuffix("API1"))
        }
    }
}
