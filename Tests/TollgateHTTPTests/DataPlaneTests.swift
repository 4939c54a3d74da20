import Foundation
import NIOCore
import NIOHTTP1
import Testing
import TollgateCore
import TollgateHTTP
import TollgateRESP
import TollgateRedis
import TollgateSQLite
import TollgateTestSupport

@Suite struct DataPlaneTests {
    /// Every row of the contract's data-plane table.
    @Test(arguments: GatewayStore.allCases)
    func answersEveryRowOfTheContract(kind: GatewayStore) async throws {
        let clock = ManualWallClock(SystemWallClock().now)
        try await withGateway(kind, clock: clock) { port, store in
            try await makeKey(in: store, limits: ["1000/day"], secret: "full", now: clock.now)
            try await makeKey(in: store, scopes: ["api1"], limits: ["api1:1/minute"], secret: "narrow", now: clock.now)
            try await makeKey(in: store, secret: "expiring", expiresAt: clock.now.adding(seconds: 10), now: clock.now)
            let revoked = try await makeKey(in: store, secret: "secret-of-a-revoked-key", now: clock.now).key
            _ = try await store.revokeKey(id: revoked.id, at: clock.now)

            for api in ["api1", "api2", "api3"] {
                let ok = try await get(port, "/\(api)", key: "full")
                #expect(ok.status == 200)
                #expect(ok.body == api.uppercased())
                #expect(ok.header("content-type")?.hasPrefix("text/plain") == true)
                #expect(ok.header("ratelimit-policy") == "\"day\";q=1000;w=86400")
                #expect(ok.header("ratelimit")?.hasPrefix("\"day\";r=") == true)
                #expect(ok.header("date") == clock.now.httpDate)
            }

            let missing = try await get(port, "/api1")
            #expect(missing.status == 401)
            #expect(missing.problemCode == "missing_api_key")
            #expect(missing.header("www-authenticate")?.hasPrefix("Bearer") == true)
            #expect(missing.header("content-type") == "application/problem+json")

            for (secret, code) in [
                ("unknown", "invalid_api_key"), ("tg_forgedforgedforgedforgedforgedxx", "invalid_api_key"),
                ("secret-of-a-revoked-key", "key_revoked"),
            ] {
                let refused = try await get(port, "/api1", key: secret)
                #expect(refused.status == 401)
                #expect(refused.problemCode == code)
                #expect(!refused.body.contains(secret), "no error body holds the key")
            }
            clock.advance(seconds: 10)
            #expect(try await get(port, "/api1", key: "expiring").problemCode == "key_expired")

            let outOfScope = try await get(port, "/api2", key: "narrow")
            #expect(outOfScope.status == 403)
            #expect(outOfScope.problemCode == "scope_denied")

            #expect(try await get(port, "/api1", key: "narrow").status == 200)
            let spent = try await get(port, "/api1", key: "narrow")
            #expect(spent.status == 429)
            #expect(spent.problemCode == "quota_exceeded")
            #expect(spent.body.contains("\"violated-policies\":[\"api1-minute\"]"))
            let retryAfter = try #require(spent.header("retry-after").flatMap(Int.init))
            #expect((1...60).contains(retryAfter))
            #expect(spent.header("ratelimit") == "\"api1-minute\";r=0;t=\(retryAfter)")

            let notFound = try await get(port, "/api4", key: "full")
            #expect(notFound.status == 404)
            #expect(notFound.problemCode == "not_found")

            let post = try await httpRequest(port: port, .POST, "/api1", headers: [("token", "full")])
            #expect(post.status == 405)
            #expect(post.header("allow") == "GET, HEAD")
            #expect(post.problemCode == "method_not_allowed")

            let head = try await httpRequest(port: port, .HEAD, "/api1", headers: [("token", "full")])
            #expect(head.status == 200)
            #expect(head.body.isEmpty)
            #expect(head.header("content-length") == "4")

            let badPath = try await get(port, "/api2/../api1", key: "full")
            #expect(badPath.status == 400)
            #expect(badPath.problemCode == "bad_path")

            #expect(try await get(port, "/api1?x=1&token=ignored", key: "full").body == "API1")
            #expect(try await get(port, "/healthz").status == 200)
            #expect(try await get(port, "/readyz").status == 200)
        }
    }

    @Test func aRefusalNamesEverySpentPolicyAndWhenTheLastResets() async throws {
        let clock = ManualWallClock(try Timestamp(parsing: "2026-11-29T23:59:30Z", now: SystemWallClock().now))
        try await withGateway(.memory, clock: clock) { port, store in
            try await makeKey(in: store, limits: ["1/day", "api1:1/minute", "5/total"], secret: "k", now: clock.now)
            #expect(try await get(port, "/api1", key: "k").status == 200)
            let spent = try await get(port, "/api1", key: "k")
            #expect(spent.status == 429)
            #expect(spent.body.hasSuffix(",\"violated-policies\":[\"day\",\"api1-minute\"]}"))
            #expect(spent.header("retry-after") == "30")
            #expect(spent.header("ratelimit-policy") == "\"day\";q=1;w=86400, \"api1-minute\";q=1;w=60, \"total\";q=5")
            #expect(spent.header("ratelimit") == "\"day\";r=0;t=30, \"api1-minute\";r=0;t=30, \"total\";r=4")
        }
    }

    /// The detail must not point at a `Retry-After` that the answer does not carry.
    @Test func aRefusalSaysWhenToRetryOnlyWhenItSendsRetryAfter() async throws {
        let clock = ManualWallClock(try Timestamp(parsing: "2026-11-29T23:59:30Z", now: SystemWallClock().now))
        try await withGateway(.memory, clock: clock) { port, store in
            try await makeKey(in: store, limits: ["1/minute"], secret: "m", now: clock.now)
            try await makeKey(in: store, limits: ["1/total", "1/minute"], secret: "t", now: clock.now)
            for secret in ["m", "t"] { #expect(try await get(port, "/api1", key: secret).status == 200) }

            let resets = try await get(port, "/api1", key: "m")
            #expect(resets.header("retry-after") == "30")
            #expect(resets.body.contains("Retry-After says"))

            let never = try await get(port, "/api1", key: "t")
            #expect(never.status == 429)
            #expect(never.header("retry-after") == nil)
            #expect(!never.body.contains("Retry-After"))
            #expect(never.body.contains("does not reset"))
            #expect(never.body.hasSuffix(",\"violated-policies\":[\"total\",\"minute\"]}"))
        }
    }

    @Test(arguments: GatewayStore.allCases)
    func takesTheKeyFromTheFirstHeaderFoundInTheContractsOrder(kind: GatewayStore) async throws {
        try await withGateway(kind) { port, store in
            try await makeKey(in: store, secret: "good")
            let cases: [([(String, String)], Int)] = [
                ([("Authorization", "Bearer good")], 200),
                ([("authorization", "bearer good")], 200),
                ([("X-API-Key", "good")], 200),
                ([("token", "good")], 200),
                ([("Authorization", "Bearer good"), ("X-API-Key", "bad")], 200),
                ([("Authorization", "Bearer bad"), ("token", "good")], 401),
                ([("X-API-Key", "good"), ("token", "bad")], 200),
                ([("X-API-Key", "bad"), ("token", "good")], 401),
                ([("Authorization", "Basic Z29vZA=="), ("token", "good")], 200),
                ([("Authorization", "Bearer ")], 401),
            ]
            for (headers, status) in cases {
                let response = try await httpRequest(port: port, .GET, "/api1", headers: headers)
                #expect(response.status == status, "\(headers)")
            }
        }
    }

    /// The old service's tests, sequential: right bodies, refusals, then 429 at the limit.
    @Test(arguments: GatewayStore.allCases)
    func theOldServicesBehaviourSequentially(kind: GatewayStore) async throws {
        try await withGateway(kind) { port, store in
            try await makeKey(in: store, scopes: ["api1", "api2"], limits: ["5/total"], secret: "demo5")
            try await TestHTTPConnection.with(port: port) { connection in
                for index in 0..<5 {
                    let api = index.isMultiple(of: 2) ? "api1" : "api2"
                    let response = try await connection.send(.GET, "/\(api)", headers: [("token", "demo5")])
                    #expect(response.status == 200)
                    #expect(response.body == api.uppercased())
                    #expect(response.header("ratelimit") == "\"total\";r=\(4 - index)")
                }
                #expect(try await connection.send(.GET, "/api3", headers: [("token", "demo5")]).status == 403)
                #expect(try await connection.send(.GET, "/api1", headers: [("token", "demo5")]).status == 429)
                #expect(try await connection.send(.GET, "/api1", headers: [("token", "nope")]).status == 401)
                #expect(try await connection.send(.GET, "/api1").status == 401)
            }
        }
    }

    /// 64 clients race on one key: exactly the quota gets `200`, per limit, all or nothing.
    @Test(arguments: GatewayStore.allCases)
    func racingClientsGetExactlyTheQuota(kind: GatewayStore) async throws {
        try await LoadLock.exclusively {
            try await withGateway(kind) { port, store in
                let key = try await makeKey(in: store, limits: ["api1:60/day", "100/total"], secret: "raced").key
                let statuses = try await withThrowingTaskGroup(of: [(String, Int)].self) { group in
                    for client in 0..<64 {
                        group.addTask {
                            try await TestHTTPConnection.with(port: port) { connection in
                                var seen: [(String, Int)] = []
                                for attempt in 0..<4 {
                                    let api = (client + attempt).isMultiple(of: 2) ? "api1" : "api2"
                                    let response = try await connection.send(.GET, "/\(api)", headers: [("token", "raced")])
                                    if response.status == 200 { #expect(response.body == api.uppercased()) }
                                    seen.append((api, response.status))
                                }
                                return seen
                            }
                        }
                    }
                    return try await group.reduce(into: []) { $0 += $1 }
                }
                let ok = statuses.filter { $0.1 == 200 }
                #expect(ok.count == 100)
                #expect(ok.filter { $0.0 == "api1" }.count <= 60)
                #expect(statuses.filter { $0.1 == 429 }.count == 256 - 100)
                let usage = try #require(try await store.usage(id: key.id))
                #expect(usage.counters["total"]?.used == 100)
                #expect(usage.counters["api1:day"]?.used == Int64(ok.filter { $0.0 == "api1" }.count))
            }
        }
    }

    /// No path trick reaches an API outside the key's scope.
    @Test(arguments: [
        "/api1/../api2", "/api1/%2e%2e/api2", "/api1/%2E%2E/api2", "/api1%2f..%2fapi2", "/api1/..%2fapi2", "//api2", "/api2/",
        "/./api2", "/api1/./../api2", "/api1\\..\\api2", "/%2fapi2", "/api2%00", "/API2", "/api2;x", "/%61pi2", "/api%32",
    ])
    func pathTricksNeverReachAnotherAPI(target: String) async throws {
        try await withGateway(.memory) { port, store in
            try await makeKey(in: store, scopes: ["api1"], secret: "one")
            let response = try await rawExchange(
                port: port,
                "GET \(target) HTTP/1.1\r\nHost: x\r\ntoken: one\r\nConnection: close\r\n\r\n"
            )
            #expect(!response.contains("API2"), "\(target) -> \(response.prefix(40))")
            let status = response.split(separator: " ").dropFirst().first.map(String.init) ?? "none"
            #expect(["400", "403", "404"].contains(status), "\(target) -> \(status)")
        }
    }

    @Test func pipelinedRequestsAreAnsweredInOrder() async throws {
        try await withGateway(.sqlite) { port, store in
            try await makeKey(in: store, secret: "k")
            try await TestHTTPConnection.with(port: port) { connection in
                for api in ["api1", "api2", "nope", "api3"] { try await connection.write(.GET, "/\(api)", headers: [("token", "k")]) }
                var bodies: [String] = []
                for _ in 0..<4 { bodies.append(try await connection.read().body) }
                #expect(bodies[0] == "API1")
                #expect(bodies[1] == "API2")
                #expect(bodies[2].contains("not_found"))
                #expect(bodies[3] == "API3")
            }
        }
    }

    /// A burst of pipelined requests, each answered at once, must not nest one answer per
    /// request on the stack.
    @Test func aDeepPipelinedBurstIsAnsweredInFull() async throws {
        try await LoadLock.exclusively {
            try await withGateway(.memory) { port, store in
                try await makeKey(in: store, secret: "k")
                let count = 3000
                var burst = ""
                for index in 0..<count {
                    let target = index.isMultiple(of: 2) ? "/nope" : "/api1"
                    burst += "GET \(target) HTTP/1.1\r\nHost: x\r\ntoken: k\r\n\(index == count - 1 ? "Connection: close\r\n" : "")\r\n"
                }
                let response = try await rawExchange(port: port, burst, timeout: .seconds(30))
                #expect(response.components(separatedBy: "HTTP/1.1 404").count - 1 == count / 2)
                #expect(response.components(separatedBy: "HTTP/1.1 200").count - 1 == count / 2)
            }
        }
    }

    @Test func oversizedHeadersAre431AndTheConnectionCloses() async throws {
        try await withGateway(.memory) { port, _ in
            let big = String(repeating: "a", count: 20_000)
            let response = try await rawExchange(port: port, "GET /api1 HTTP/1.1\r\nHost: x\r\nX-Big: \(big)\r\n\r\n")
            #expect(response.hasPrefix("HTTP/1.1 431"))
            #expect(response.contains("headers_too_large"))
        }
    }

    @Test func aBodyOnAnAPIRouteIsRefusedAndTheConnectionCloses() async throws {
        try await withGateway(.memory) { port, store in
            try await makeKey(in: store, secret: "k")
            // The server answers without waiting for the announced megabyte.
            let response = try await rawExchange(
                port: port,
                "GET /api1 HTTP/1.1\r\nHost: x\r\ntoken: k\r\nContent-Length: 1000000\r\n\r\npartial",
                timeout: .seconds(5)
            )
            #expect(response.hasPrefix("HTTP/1.1 413"))
            #expect(response.contains("body_not_allowed"))
            #expect(response.lowercased().contains("connection: close"))
            // A client that sends its whole body still reads the answer, then the server closes.
            let body = String(repeating: "x", count: 200_000)
            let start = ContinuousClock.now
            let whole = try await rawExchange(
                port: port,
                "GET /api1 HTTP/1.1\r\nHost: x\r\ntoken: k\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)",
                timeout: .seconds(10)
            )
            #expect(whole.hasPrefix("HTTP/1.1 413"))
            #expect(ContinuousClock.now - start < .seconds(5))
        }
    }

    @Test func malformedRequestsAre400() async throws {
        try await withGateway(.memory) { port, _ in
            let response = try await rawExchange(port: port, "GET /api1 HTTP/1.1\r\nBad Header Line\r\n\r\n")
            #expect(response.hasPrefix("HTTP/1.1 400"))
        }
    }

    @Test func silentAndSlowClientsAreClosedAfterTheIdleTimeout() async throws {
        try await withGateway(.memory, configure: { $0.idleTimeout = .milliseconds(300) }) { port, _ in
            let start = ContinuousClock.now
            // A head that never completes: the server must not wait for it forever.
            let response = try await rawExchange(port: port, "GET /api1 HTTP/1.1\r\nHost: x\r\n", timeout: .seconds(10))
            #expect(response.isEmpty)
            #expect(ContinuousClock.now - start < .seconds(5))
        }
    }

    @Test func http10ClosesAfterTheAnswer() async throws {
        try await withGateway(.memory) { port, store in
            try await makeKey(in: store, secret: "k")
            let start = ContinuousClock.now
            let response = try await rawExchange(port: port, "GET /api1 HTTP/1.0\r\ntoken: k\r\n\r\n", timeout: .seconds(10))
            #expect(ContinuousClock.now - start < .seconds(5), "the server closed; the client's timeout did not")
            #expect(response.hasPrefix("HTTP/1.1 200"))
            #expect(response.hasSuffix("API1"))
        }
    }

    /// A commit that fails must not let its requests through: they answer 503.
    @Test func aFailedCommitAnswers503AndServesNothing() async throws {
        let path = try TestPaths.temporaryDirectory().appendingPathComponent("broken.sqlite").path
        let store = try SQLiteKeyStore(configuration: .init(path: path))
        try await makeKey(in: store, secret: "k")
        try await withDataPlane(store: store) { port in
            #expect(try await get(port, "/api1", key: "k").status == 200)
            // Another process breaks the store under the running server.
            let vandal = try SQLiteKeyStore(configuration: .init(path: path))
            try await vandal.dropUsageTablesForTesting()
            let response = try await get(port, "/api1", key: "k")
            #expect(response.status == 503)
            #expect(response.problemCode == "store_unavailable")
            #expect(!response.body.contains("API1"))
        }
    }

    /// Requests NIO's parser refuses or that no route can take (CONNECT, absolute and
    /// authority forms) get a complete problem+json answer, and the connection closes
    /// when the answer says it will, without waiting for the idle timeout.
    @Test(arguments: [
        "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
        "GET /api1 HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
        "GET /api1 HTTP/1.1\r\nBad Header Line\r\n\r\n",
        "BREW /api1 HTTP/1.1\r\n\r\n",
        "GET /api1 HTTP/9.9\r\n\r\n",
    ])
    func everyRefusalIsACompleteProblemAndClosesAsItSays(request: String) async throws {
        try await withGateway(.memory) { port, _ in
            let start = ContinuousClock.now
            let response = try await rawExchange(port: port, request, timeout: .seconds(10))
            #expect(ContinuousClock.now - start < .seconds(5), "the server closed; the client's timeout did not")
            #expect(response.hasPrefix("HTTP/1.1 4"), "\(response)")
            let lower = response.lowercased()
            #expect(lower.contains("content-type: application/problem+json"))
            #expect(lower.contains("content-length: "))
            #expect(lower.contains("connection: close"))
            let body = response.components(separatedBy: "\r\n\r\n").dropFirst().joined()
            #expect(body.contains("\"code\":"), "a problem body: \(body)")
        }
    }

    /// No cache in front of the gateway may store an answer and hand it to other callers
    /// without their key, and without counting it.
    @Test func noAnswerMayBeStoredByACache() async throws {
        try await withGateway(.memory) { port, store in
            try await makeKey(in: store, limits: ["1/total"], secret: "k")
            let admitted = try await get(port, "/api1", key: "k")
            #expect(admitted.status == 200)
            #expect(admitted.header("cache-control") == "private, no-store")
            #expect(try await get(port, "/api1", key: "k").header("cache-control") == "private, no-store")
            for target in ["/api1", "/healthz", "/readyz", "/nope", "/a/../api1"] {
                #expect(try await get(port, target).header("cache-control") == "no-store", "\(target)")
            }
        }
    }
}
