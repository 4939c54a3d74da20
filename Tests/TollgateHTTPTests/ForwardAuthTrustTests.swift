import Foundation
import NIOCore
import NIOHTTP1
import Testing
import TollgateCore
import TollgateHTTP
import TollgateTestSupport

/// Forward-auth as an attacker uses it: a client writes the fields another proxy family
/// sets, hoping the gateway reads them instead of what its own proxy set.
@Suite struct ForwardAuthTrustTests {
    static let routes = LiveRoutes(
        RouteTable(
            routes: [
                Route(name: "orders", prefix: "v1/orders", methods: [.GET], action: .fixed(FixedAnswer(body: "orders"))),
                Route(name: "other", prefix: "v1/other", action: .fixed(FixedAnswer(body: "other"))),
            ] + Route.defaults))

    /// A key scoped to `orders` only, with room to count every admission.
    func withOrdersKey(_ kind: GatewayStore, _ body: (Int, any KeyStore, KeyID) async throws -> Void) async throws {
        try await withGateway(kind, configure: { $0.routes = Self.routes }) { port, store in
            let key = try await makeKey(in: store, scopes: ["orders*"], limits: ["1000/day"], secret: "orders-key").key
            try await body(port, store, key.id)
        }
    }

    func ask(_ port: Int, _ method: HTTPMethod = .GET, _ target: String, _ fields: [(String, String)]) async throws -> TestResponse {
        try await httpRequest(port: port, method, target, headers: [("token", "orders-key")] + fields)
    }

    func admitted(_ store: any KeyStore, _ id: KeyID) async throws -> Int64 {
        try await store.usage(id: id)?.apis.values.reduce(0) { $0 + $1.admitted } ?? 0
    }

    /// Two sources that disagree are refused and count nothing; sources that agree are fine.
    @Test(arguments: GatewayStore.allCases)
    func theGenericFormRefusesSourcesThatDisagree(kind: GatewayStore) async throws {
        try await withOrdersKey(kind) { port, store, id in
            let conflicting: [(String, [(String, String)])] = [
                // Behind Traefik or Caddy: the proxy's X-Forwarded-Uri, the client's X-Original-URI.
                ("/auth", [("X-Original-URI", "/v1/orders/x"), ("X-Forwarded-Uri", "/v1/other/x")]),
                // Behind nginx: the client's X-Forwarded-Uri passed through.
                ("/auth", [("X-Forwarded-Uri", "/v1/orders/x"), ("X-Original-URI", "/v1/other/x")]),
                // The Envoy form, with the client's header beside the path below the prefix.
                ("/auth/v1/other/x", [("X-Original-URI", "/v1/orders/x")]),
                // Two fields of one family.
                ("/auth", [("X-Original-URI", "/v1/orders/x"), ("X-Original-URI", "/v1/other/x")]),
                // The same path, two methods: a GET-only route asked about a DELETE.
                (
                    "/auth",
                    [
                        ("X-Original-URI", "/v1/orders/x"), ("X-Forwarded-Uri", "/v1/orders/x"), ("X-Forwarded-Method", "DELETE"),
                        ("X-Original-Method", "GET"),
                    ]
                ),
                ("/auth/v1/orders/x", [("X-Original-Method", "GET"), ("X-Forwarded-Method", "GET")]),
            ]
            for (target, fields) in conflicting {
                let response = try await ask(port, target == "/auth/v1/orders/x" ? .DELETE : .GET, target, fields)
                #expect(response.status == 400, "\(target) \(fields)")
                #expect(response.problemCode == "ambiguous_original_request", "\(target) \(fields)")
                #expect(response.header("content-type") == "application/problem+json")
            }
            #expect(try await admitted(store, id) == 0, "a refused question counts nothing")

            let agreeing = try await ask(
                port, .GET, "/auth/v1/orders/x?q=1",
                [("X-Original-URI", "/v1/orders/x?q=1"), ("X-Forwarded-Uri", "/v1/orders/x?q=1"), ("X-Forwarded-Method", "GET")])
            #expect(agreeing.status == 200, "\(agreeing.body)")
            #expect(try await admitted(store, id) == 1)
        }
    }

    /// Each proxy's form reads only the fields that proxy sets: a client's copy of the other
    /// family's fields changes nothing.
    @Test(arguments: GatewayStore.allCases)
    func eachProxysFormReadsOnlyItsOwnFields(kind: GatewayStore) async throws {
        try await withOrdersKey(kind) { port, store, id in
            // nginx: the proxy set X-Original-URI; the client added X-Forwarded-Uri.
            let nginx = try await ask(port, .GET, "/auth/nginx", [("X-Original-URI", "/v1/other/x"), ("X-Forwarded-Uri", "/v1/orders/x")])
            #expect(nginx.status == 403 && nginx.problemCode == "scope_denied", "\(nginx.body)")
            #expect(try await ask(port, .GET, "/auth/nginx", [("X-Original-URI", "/v1/orders/x")]).status == 200)
            // Traefik and Caddy: X-Forwarded-Uri and -Method; the client's X-Original-* ignored.
            for form in ["traefik", "caddy"] {
                let refused = try await ask(
                    port, .GET, "/auth/\(form)",
                    [("X-Forwarded-Uri", "/v1/other/x"), ("X-Original-URI", "/v1/orders/x"), ("X-Original-Method", "GET")])
                #expect(refused.status == 403, "\(form): \(refused.body)")
                let wrongMethod = try await ask(
                    port, .GET, "/auth/\(form)",
                    [("X-Forwarded-Uri", "/v1/orders/x"), ("X-Forwarded-Method", "DELETE"), ("X-Original-Method", "GET")])
                #expect(wrongMethod.status == 405, "\(form): \(wrongMethod.body)")
                #expect(try await ask(port, .GET, "/auth/\(form)", [("X-Forwarded-Uri", "/v1/orders/x")]).status == 200)
            }
            // Envoy: the path below /auth/envoy and the request's own method; no field read.
            let envoy = try await ask(
                port, .GET, "/auth/envoy/v1/other/x", [("X-Original-URI", "/v1/orders/x"), ("X-Forwarded-Uri", "/v1/orders/x")])
            #expect(envoy.status == 403)
            let envoyMethod = try await ask(port, .DELETE, "/auth/envoy/v1/orders/x", [("X-Original-Method", "GET")])
            #expect(envoyMethod.status == 405)
            #expect(try await ask(port, .GET, "/auth/envoy/v1/orders/x?q=1", []).status == 200)
            #expect(try await admitted(store, id) == 4, "four questions answered 200, four counted")
        }
    }

    @Test func aFormWithoutItsFieldOrWithABadMethodIs400() async throws {
        try await withOrdersKey(.memory) { port, store, id in
            for (target, fields) in [
                ("/auth/nginx", [("X-Forwarded-Uri", "/v1/orders/x")]),
                ("/auth/traefik", [("X-Original-URI", "/v1/orders/x")]),
                ("/auth/caddy", []),
                ("/auth", [("X-Original-URI", "/v1/orders/x"), ("X-Original-Method", "G E T")]),
                ("/auth", [("X-Original-URI", "/v1/orders/x"), ("X-Original-Method", "")]),
                ("/auth/nginx", [("X-Original-URI", "/v1/orders/x"), ("X-Original-Method", "GE/T")]),
            ] as [(String, [(String, String)])] {
                let response = try await ask(port, .GET, target, fields)
                #expect(response.status == 400 && response.problemCode == "bad_original_request", "\(target) \(fields): \(response.body)")
            }
            #expect(try await ask(port, .GET, "/auth/nginx/v1/orders/x", [("X-Original-URI", "/v1/orders/x")]).status == 404)
            #expect(try await ask(port, .GET, "/auth", []).problemCode == "unknown_route", "no source at all")
            #expect(try await admitted(store, id) == 0)
        }
    }

    /// Path parameters that hide a dot segment are refused before anything is counted:
    /// Tomcat, Jetty and Spring would resolve `/v1/orders/..;/admin` to `/v1/admin`.
    @Test(arguments: GatewayStore.allCases)
    func pathParametersCannotHideADotSegment(kind: GatewayStore) async throws {
        try await withOrdersKey(kind) { (port, store, id) async throws in
            for target in ["/v1/orders/..;/other", "/v1/orders/.;/x", "/v1/orders/..%3b/other", "/v1/orders/..%3B;x/other"] {
                #expect(try await ask(port, .GET, target, []).problemCode == "bad_path", "\(target)")
                #expect(try await ask(port, .GET, "/auth", [("X-Original-URI", target)]).problemCode == "bad_path", "\(target)")
                #expect(try await ask(port, .GET, "/auth/nginx", [("X-Original-URI", target)]).problemCode == "bad_path", "\(target)")
                #expect(try await ask(port, .GET, "/auth/envoy\(target)", []).problemCode == "bad_path", "\(target)")
            }
            #expect(try await ask(port, .GET, "/v1/orders/x;v=1", []).status == 200, "a plain path parameter stays legal")
            #expect(try await admitted(store, id) == 1)
        }
    }

    /// A question that carries a body is answered like any other once the body is read
    /// away, and counted exactly when it is answered `200`; a body above the bound is `413`
    /// and counts nothing.
    @Test(arguments: GatewayStore.allCases)
    func aQuestionWithABodyIsAnsweredAndCountedOnce(kind: GatewayStore) async throws {
        try await withOrdersKey(kind) { port, store, id in
            let head = "GET /auth/nginx HTTP/1.1\r\nHost: x\r\ntoken: orders-key\r\nX-Original-URI: /v1/orders/1\r\n"
            let sized = try await rawExchange(port: port, head + "Content-Length: 5\r\nConnection: close\r\n\r\nhello")
            #expect(sized.hasPrefix("HTTP/1.1 200"), "\(sized)")
            let chunked = try await rawExchange(
                port: port, head + "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
            #expect(chunked.hasPrefix("HTTP/1.1 200"), "\(chunked)")
            // Kept alive: the next question on the connection is answered too.
            let twice = try await rawExchange(
                port: port, head + "Content-Length: 2\r\n\r\nhi" + head + "Connection: close\r\n\r\n")
            #expect(twice.components(separatedBy: "HTTP/1.1 200").count - 1 == 2, "\(twice)")
            #expect(try await admitted(store, id) == 4, "four 200s, four counted")

            let large = try await rawExchange(port: port, head + "Content-Length: 100000\r\n\r\n" + String(repeating: "b", count: 100_000))
            #expect(large.hasPrefix("HTTP/1.1 413") && large.contains("body_too_large"), "\(large.prefix(200))")
            let largeChunked = try await rawExchange(
                port: port, head + "Transfer-Encoding: chunked\r\n\r\n10001\r\n" + String(repeating: "c", count: 65537) + "\r\n0\r\n\r\n")
            #expect(largeChunked.hasPrefix("HTTP/1.1 413") && largeChunked.contains("body_too_large"), "\(largeChunked.prefix(200))")
            #expect(try await admitted(store, id) == 4, "a refused body counts nothing")
        }
    }

    /// RFC 9112 section 3.2: an HTTP/1.1 request without `Host`, or any with two, is `400`.
    @Test(arguments: [
        "GET /api1 HTTP/1.1\r\ntoken: k\r\n\r\n",
        "GET /api1 HTTP/1.1\r\nHost: a\r\nHost: a\r\ntoken: k\r\n\r\n",
        "GET /api1 HTTP/1.1\r\nHost: a\r\nHost: b\r\ntoken: k\r\n\r\n",
        "GET /api1 HTTP/1.0\r\nHost: a\r\nHost: b\r\ntoken: k\r\n\r\n",
        "GET /auth HTTP/1.1\r\ntoken: k\r\nX-Original-URI: /api1\r\n\r\n",
        "GET /api1 HTTP/1.0\r\nTransfer-Encoding: chunked\r\ntoken: k\r\n\r\n0\r\n\r\n",
    ])
    func hostFieldsFollowHTTP11(request: String) async throws {
        try await withGateway(.memory) { port, store in
            let key = try await makeKey(in: store, secret: "k").key
            let response = try await rawExchange(port: port, request, timeout: .seconds(10))
            #expect(response.hasPrefix("HTTP/1.1 400") && response.contains("\"code\":\"bad_request\""), "\(response)")
            #expect(try await store.usage(id: key.id)?.apis.isEmpty ?? true)
        }
    }
}
