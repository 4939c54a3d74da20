import NIOCore
import NIOHTTP1
import Testing
import TollgateCore

@testable import TollgateHTTP

/// The route file: what it reads, and the line of every mistake.
@Suite struct RouteFileTests {
    @Test func readsEveryRouteKindAndItsSettings() throws {
        let table = try RouteFile.parse(
            """
            forward_auth:
              path: /check
            routes:
              - name: orders
                prefix: /v1/orders
                methods: [GET, POST]
                upstream: http://127.0.0.1:8080/base/
                strip_prefix: true
                connect_timeout: 500ms
                response_timeout: 5s
                max_body_bytes: 1024
                key_id_header: X-Key
              - name: ping
                prefix: /ping
                answer: { status: 201, content_type: application/json, body: '{"ok":true}' }
              - name: open
                upstream: http://[::1]
                key_id_header: ""
                give_back_on_5xx: true
            """
        )
        #expect(table.forwardAuthPath == "check")
        let orders = try #require(table.route(for: "v1/orders/5"))
        #expect(orders.name == "orders")
        #expect(orders.methods == [.GET, .POST])
        guard case .upstream(let upstream) = orders.action else {
            Issue.record("orders forwards")
            return
        }
        #expect(upstream.host == "127.0.0.1" && upstream.port == 8080 && upstream.basePath == "/base")
        #expect(upstream.stripPrefix && upstream.connectTimeout == .milliseconds(500) && upstream.responseTimeout == .seconds(5))
        #expect(upstream.maxBodyBytes == 1024 && upstream.keyIDHeader == "X-Key" && !upstream.giveBackOn5xx)
        #expect(upstream.target(for: "/v1/orders/5?x=1", prefix: orders.prefix) == "/base/5?x=1")
        #expect(upstream.target(for: "/v1/orders?x=1", prefix: orders.prefix) == "/base/?x=1")

        let ping = try #require(table.route(for: "ping"))
        #expect(ping.action == .fixed(FixedAnswer(status: 201, contentType: "application/json", body: "{\"ok\":true}")))
        #expect(ping.methods == [.GET, .HEAD], "a fixed answer takes GET and HEAD unless told")

        let open = try #require(table.route(for: "open"))
        guard case .upstream(let openUpstream) = open.action else {
            Issue.record("open forwards")
            return
        }
        #expect(openUpstream.host == "::1" && openUpstream.port == 80 && openUpstream.keyIDHeader == nil)
        #expect(openUpstream.giveBackOn5xx, "give_back_on_5xx: true is taken as written")
        #expect(open.methods == nil, "an upstream route takes any method unless told")
    }

    @Test(
        arguments: [
            ("v1/orders", "orders"), ("v1/orders/5", "orders"), ("v1/orders2", nil), ("v1", nil), ("v1/orders/5/items", "items"),
            ("v1/orders/5/items/9", "items"), ("api1", "api1"), ("api1/x", nil),
        ] as [(String, String?)])
    func prefixesMatchAtASlashAndTheLongestWins(path: String, route: String?) throws {
        let table = try RouteFile.parse(
            """
            routes:
              - { name: orders, prefix: /v1/orders, upstream: "http://127.0.0.1:1" }
              - { name: items, prefix: /v1/orders/5/items, upstream: "http://127.0.0.1:1" }
              - { name: api1, exact: true, answer: { body: API1 } }
            """
        )
        #expect(table.route(for: path)?.name == route)
    }

    @Test(arguments: [
        ("orders", "v1/orders", "v1/orders", "orders"), ("orders", "v1/orders", "v1/orders/5", "orders/5"),
        ("api1", "api1", "api1/x", "api1/x"), ("root", "", "a/b", "root/a/b"), ("root", "", "", "root"),
    ])
    func scopesSeeTheRouteNameThenTheRestOfThePath(name: String, prefix: String, path: String, scopePath: String) {
        let route = Route(name: name, prefix: prefix, action: .fixed(FixedAnswer(body: "")))
        #expect(route.scopePath(for: path) == scopePath)
    }

    /// Each mistake, and the line it must be reported on.
    @Test(
        arguments: [
            ("routes: 5", 1, "'routes' must be a list"),
            ("routes:\n  - name: a\n    answer: { body: x }\n  - name: a\n    prefix: /b\n    answer: { body: y }", 4, "used twice"),
            ("routes:\n  - name: a\n    upstream: https://x", 3, "https upstreams are not supported"),
            ("routes:\n  - name: a\n    upstream: http://x:99999", 3, "port"),
            ("routes:\n  - name: a\n    upstream: http://x\n    connect_timeout: soon", 4, "duration"),
            ("routes:\n  - name: a\n    answer: { body: x }\n    strip_prefix: true", 4, "upstream routes only"),
            ("routes:\n  - name: a\n    prefix: /x/../y\n    answer: { body: x }", 3, "not a plain path"),
            ("routes:\n  - name: 'a b'\n    answer: { body: x }", 2, "letters, digits"),
            ("routes:\n  - name: a", 2, "either 'answer'"),
            ("routes:\n  - name: a\n    methods: [get]\n    upstream: http://x", 3, "capitals"),
            ("routes:\n  - name: a\n    upstream: http://x\n    give_back_on_5xx: maybe", 4, "must be true or false"),
            ("routes:\n  - name: a\n    answer: { body: x }\n    give_back_on_5xx: true", 4, "upstream routes only"),
            ("routes:\n  - name: a\n    upstream: http://x\n    colour: blue", 4, "unknown route setting 'colour'"),
            ("routes:\n  - name: a\n    answer: { status: 99, body: x }", 3, "200 to 599"),
            ("routes:\n  - name: a\n    prefix: /auth\n    answer: { body: x }", 2, "forward-auth path"),
            ("routes:\n  - name: a\n    prefix: /healthz\n    answer: { body: x }", 2, "health"),
            ("routes:\n  - name: a\n  answer: [", 3, "not valid YAML"),
            ("listen: 80", 1, "unknown setting 'listen'"),
        ] as [(String, Int, String)])
    func namesTheLineOfEachMistake(text: String, line: Int, message: String) {
        do {
            _ = try RouteFile.parse(text)
            Issue.record("\(text) was accepted")
        } catch {
            let problem = error.problems.first { $0.message.contains(message) }
            #expect(problem != nil, "\(error.problems) should say \(message)")
            #expect(problem?.line == line, "\(error.problems)")
        }
    }

    @Test func reportsEveryMistakeNotOnlyTheFirst() {
        do {
            _ = try RouteFile.parse("routes:\n  - name: a\n    upstream: ftp://x\n  - name: b\n    answer: { status: 1000, body: x }")
            Issue.record("accepted")
        } catch {
            #expect(error.problems.map(\.line) == [3, 5])
        }
    }
}

/// `trusted_proxies`: addresses and CIDR blocks, IPv4 and IPv6, matched against peers.
@Suite struct TrustedProxiesTests {
    @Test func readsAddressesAndBlocksAndMatchesPeers() throws {
        let table = try RouteFile.parse(
            """
            trusted_proxies: [127.0.0.1, 10.0.0.0/8, "fd00::/8", "::1"]
            routes:
              - name: ping
                answer: { body: pong }
            """
        )
        #expect(table.trustedProxies.map(\.description) == ["127.0.0.1", "10.0.0.0/8", "fd00::/8", "::1"])
        for (address, trusted) in [
            ("127.0.0.1", true), ("127.0.0.2", false), ("10.200.3.4", true), ("11.0.0.1", false), ("fd12::1", true), ("fe80::1", false),
            ("::1", true), ("::ffff:10.1.2.3", true), ("::ffff:11.1.2.3", false),
        ] {
            #expect(table.trusts(try SocketAddress(ipAddress: address, port: 1)) == trusted, "\(address)")
        }
        #expect(!RouteTable(routes: []).trusts(try SocketAddress(ipAddress: "127.0.0.1", port: 1)), "none by default")
    }

    @Test(arguments: ["10.0.0.0/33", "10.0.0/8", "example.com", "::1/129", "1.2.3.4/", "1.2.3.4/-1", ""])
    func refusesWhatIsNoAddressOrBlock(entry: String) {
        #expect(throws: RouteFileError.self) {
            try RouteFile.parse("trusted_proxies: [\"\(entry)\"]\nroutes:\n  - name: ping\n    answer: { body: pong }\n")
        }
    }
}
