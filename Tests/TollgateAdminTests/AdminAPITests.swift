import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOHTTP1
import Testing
import TollgateCore
import TollgateTestSupport

@testable import TollgateAdmin

/// Every `/admin/v1` route in process, success and failure.
@Suite struct AdminAPITests {
    // MARK: Token

    @Test func withoutATokenTheAdminAPIIsNotServed() async throws {
        let app = try adminApp(store: MemoryKeyStore(), token: nil)
        try await app.test(.router) { client in
            for path in ["/admin/v1/keys", "/admin/v1/openapi.json", "/admin/v1/usage"] {
                try await client.execute(uri: path, method: .get, headers: adminHeaders()) { response in
                    #expect(response.status == .notFound)
                    #expect(response.headers[.contentType] == "application/problem+json")
                    #expect(response.problemCode == "not_found")
                }
            }
        }
    }

    @Test func aMissingOrWrongTokenIs401WithAChallenge() async throws {
        let app = try adminApp(store: MemoryKeyStore())
        try await app.test(.router) { client in
            let cases: [(HTTPFields, String)] = [
                ([:], "missing_admin_token"),
                ([.authorization: "Basic YWRtaW46YWRtaW4="], "missing_admin_token"),
                ([.authorization: "Bearer"], "missing_admin_token"),
                ([.authorization: "Bearer wrong"], "invalid_admin_token"),
                ([.authorization: "Bearer \(adminToken)x"], "invalid_admin_token"),
                ([.authorization: "Bearer \(adminToken.dropLast())"], "invalid_admin_token"),
            ]
            for (headers, code) in cases {
                try await client.execute(uri: "/admin/v1/keys", method: .get, headers: headers) { response in
                    #expect(response.status == .unauthorized)
                    #expect(response.headers[.wwwAuthenticate]?.hasPrefix("Bearer") == true)
                    #expect(response.problemCode == code)
                }
            }
            try await client.execute(uri: "/admin/v1/keys", method: .get, headers: [.authorization: "bearer \(adminToken)"]) { response in
                #expect(response.status == .ok)
            }
            // The document needs no token: it is the one in the public repository.
            try await client.execute(uri: "/admin/v1/openapi.json", method: .get) { response in
                #expect(response.status == .ok)
            }
        }
    }

    @Test func anAdminTokenMustBeOneLineOfVisibleASCIIAndLongEnough() throws {
        let bad = [
            "", "has space in a long token", "line\nbreak-in-a-long-token",
            String(repeating: "x", count: AdminToken.maximumLength + 1), "é-in-a-long-enough-token",
        ]
        for text in bad {
            #expect(throws: TollgateError.self, "\(text)") { try AdminToken(text) }
        }
        #expect(throws: TollgateError.self) { try AdminToken(String(repeating: "x", count: AdminToken.minimumLength - 1)) }
        _ = try AdminToken(String(repeating: "x", count: AdminToken.minimumLength))
        let token = try AdminToken("good-token-0123456789")
        #expect(token.matches("good-token-0123456789"))
        #expect(!token.matches("good-token-0123456789 "))
        #expect(!token.matches(""))
    }

    // MARK: Create

    @Test func createAnswers201WithTheSecretOnce() async throws {
        let store = MemoryKeyStore()
        let logs = LogCapture()
        let app = try adminApp(store: store, logs: logs)
        try await app.test(.router) { client in
            let created = try await client.execute(
                uri: "/admin/v1/keys", method: .post, headers: adminHeaders(json: true),
                body: body(#"{"name":"partner","scopes":["api1*","api2"],"limits":["api1:10/minute","1000/month"],"expires_at":"30d"}"#))
            #expect(created.status == .created)
            let object = try jsonObject(created)
            let id = try #require(object["id"] as? String)
            let secret = try #require(object["key"] as? String)
            #expect(KeySecret.isPlausible(secret))
            #expect(created.headers[.location] == "/admin/v1/keys/\(id)")
            #expect(object["scopes"] as? [String] == ["api1*", "api2"])
            #expect(object["limits"] as? [String] == ["api1:10/minute", "1000/month"])
            #expect(object["status"] as? String == "active")
            #expect(object["expires_at"] is String)
            let stored = try #require(try await store.key(id: KeyID(rawValue: id)))
            #expect(stored.digest == KeyDigest(secret: secret))

            // No other answer, and no log line, holds the secret.
            for uri in ["/admin/v1/keys", "/admin/v1/keys/\(id)", "/admin/v1/keys/\(id)/usage", "/admin/v1/usage?format=csv"] {
                let response = try await client.execute(uri: uri, method: .get, headers: adminHeaders())
                #expect(response.status == .ok)
                #expect(!response.text.contains(secret))
            }
            #expect(logs.text.contains(id))
            #expect(!logs.text.contains(secret))
        }
    }

    /// A bad request names the member at fault, and nothing is stored.
    @Test(arguments: [
        ("{", "body"),
        ("[]", "body"),
        ("\"text\"", "body"),
        (#"{"nope":1}"#, "nope"),
        (#"{"name":7}"#, "name"),
        (#"{"name":null}"#, "name"),
        (#"{"name":"a\u0007b"}"#, "name"),
        (#"{"scopes":"api1"}"#, "scopes"),
        (#"{"scopes":[1]}"#, "scopes[0]"),
        (#"{"scopes":["api1/*"]}"#, "scopes[0]"),
        (#"{"limits":["10/minute","ten/day"]}"#, "limits[1]"),
        (#"{"limits":["10/fortnight"]}"#, "limits[0]"),
        (#"{"limits":[true]}"#, "limits[0]"),
        (#"{"expires_at":"soon"}"#, "expires_at"),
        (#"{"expires_at":"2001-01-01"}"#, "expires_at"),
        (#"{"expires_at":12}"#, "expires_at"),
    ])
    func createRefusesBadInputNamingTheField(input: String, field: String) async throws {
        let store = MemoryKeyStore()
        let app = try adminApp(store: store)
        try await app.test(.router) { client in
            let response = try await client.execute(
                uri: "/admin/v1/keys", method: .post, headers: adminHeaders(json: true), body: body(input))
            #expect(response.status == .badRequest)
            #expect(response.problemCode == "invalid_request")
            #expect(response.problemField == field)
            #expect((response.problem?["detail"] as? String)?.isEmpty == false)
        }
        #expect(try await store.allKeys().isEmpty)
    }

    @Test func anOversizedBodyIs413() async throws {
        let app = try adminApp(store: MemoryKeyStore())
        try await app.test(.router) { client in
            let name = String(repeating: "x", count: 70_000)
            let response = try await client.execute(
                uri: "/admin/v1/keys", method: .post, headers: adminHeaders(json: true), body: body(#"{"name":"\#(name)"}"#))
            #expect(response.status == .contentTooLarge)
            #expect(response.problemCode == "body_too_large")
        }
    }

    // MARK: List

    @Test func listPagesWithACursor() async throws {
        let store = MemoryKeyStore()
        for _ in 0..<5 { try await makeKey(in: store) }
        let ids = try await store.allKeys().map(\.id.rawValue)
        let app = try adminApp(store: store)
        try await app.test(.router) { client in
            var seen: [String] = []
            var uri = "/admin/v1/keys?limit=2"
            var pages = 0
            while true {
                let response = try await client.execute(uri: uri, method: .get, headers: adminHeaders())
                #expect(response.status == .ok)
                let page = try jsonArray(response)
                #expect(page.allSatisfy { $0["key"] == nil })
                seen += page.compactMap { $0["id"] as? String }
                pages += 1
                guard let link = response.headers[.link] else { break }
                let next = try #require(link.split(separator: ">").first.map { String($0.dropFirst()) })
                #expect(link.hasSuffix("rel=\"next\""))
                uri = next
            }
            #expect(seen == ids)
            #expect(pages == 3)
            let all = try await client.execute(uri: "/admin/v1/keys", method: .get, headers: adminHeaders())
            #expect(try jsonArray(all).count == 5)
            #expect(all.headers[.link] == nil)
            let exact = try await client.execute(uri: "/admin/v1/keys?limit=5", method: .get, headers: adminHeaders())
            #expect(exact.headers[.link] == nil)
            let after = try await client.execute(uri: "/admin/v1/keys?after=\(ids[3])", method: .get, headers: adminHeaders())
            #expect(try jsonArray(after).compactMap { $0["id"] as? String } == [ids[4]])
        }
    }

    @Test(arguments: ["limit=0", "limit=1001", "limit=ten", "limit=-1", "limit=", "after=%20bad"])
    func listRefusesABadQuery(query: String) async throws {
        let app = try adminApp(store: MemoryKeyStore())
        try await app.test(.router) { client in
            let response = try await client.execute(uri: "/admin/v1/keys?\(query)", method: .get, headers: adminHeaders())
            #expect(response.status == .badRequest)
            #expect(response.problemField == String(query.prefix { $0 != "=" }))
        }
    }

    // MARK: One key

    @Test func showUpdateRevokeAndTheirUnknownKeys() async throws {
        let store = MemoryKeyStore()
        let clock = ManualWallClock(SystemWallClock().now)
        let (key, secret) = try await makeKey(in: store, scopes: ["api1"], limits: ["api1:5/minute", "100/total"], now: clock.now)
        let app = try adminApp(store: store, clock: clock)
        try await app.test(.router) { client in
            let shown = try await client.execute(uri: "/admin/v1/keys/\(key.id)", method: .get, headers: adminHeaders())
            #expect(shown.status == .ok)
            #expect(try jsonObject(shown)["limits"] as? [String] == ["api1:5/minute", "100/total"])
            #expect(!shown.text.contains(secret))

            let patched = try await client.execute(
                uri: "/admin/v1/keys/\(key.id)", method: .patch, headers: adminHeaders(json: true),
                body: body(#"{"name":"renamed","scopes":["*"],"limits":["api1:7/minute"],"expires_at":"2030-01-01"}"#))
            #expect(patched.status == .ok)
            let object = try jsonObject(patched)
            #expect(object["name"] as? String == "renamed")
            #expect(object["scopes"] as? [String] == ["*"])
            #expect(object["limits"] as? [String] == ["api1:7/minute"])
            #expect(object["expires_at"] as? String == "2030-01-01T00:00:00Z")
            #expect(!patched.text.contains(secret))
            var stored = try #require(try await store.key(id: key.id))
            #expect(stored.name == "renamed" && stored.limits.map(\.description) == ["api1:7/minute"])

            // Members left out are kept; null clears the expiry.
            let cleared = try await client.execute(
                uri: "/admin/v1/keys/\(key.id)", method: .patch, headers: adminHeaders(json: true), body: body(#"{"expires_at":null}"#))
            #expect(cleared.status == .ok)
            stored = try #require(try await store.key(id: key.id))
            #expect(stored.expiresAt == nil && stored.name == "renamed")

            // A bad member: 400 naming it, and nothing applied, not even the good members.
            let bad = try await client.execute(
                uri: "/admin/v1/keys/\(key.id)", method: .patch, headers: adminHeaders(json: true),
                body: body(#"{"name":"half","limits":["5/minute","oops"]}"#))
            #expect(bad.status == .badRequest)
            #expect(bad.problemField == "limits[1]")
            #expect(try await store.key(id: key.id)?.name == "renamed")

            let revoked = try await client.execute(uri: "/admin/v1/keys/\(key.id)", method: .delete, headers: adminHeaders())
            #expect(revoked.status == .noContent)
            #expect(revoked.body.readableBytes == 0)
            let revokedAt = try #require(try await store.key(id: key.id)?.revokedAt)
            clock.advance(seconds: 5)
            let again = try await client.execute(uri: "/admin/v1/keys/\(key.id)", method: .delete, headers: adminHeaders())
            #expect(again.status == .noContent)
            #expect(try await store.key(id: key.id)?.revokedAt == revokedAt)
            #expect(
                try jsonObject(try await client.execute(uri: "/admin/v1/keys/\(key.id)", method: .get, headers: adminHeaders()))["status"]
                    as? String == "revoked")

            for (method, uri) in [
                (HTTPRequest.Method.get, "/admin/v1/keys/nope"), (.patch, "/admin/v1/keys/nope"), (.delete, "/admin/v1/keys/nope"),
                (.get, "/admin/v1/keys/nope/usage"), (.post, "/admin/v1/keys/nope/usage/reset"), (.post, "/admin/v1/keys/nope/rotate"),
                (.get, "/admin/v1/keys/has%20space"),
            ] {
                let response = try await client.execute(uri: uri, method: method, headers: adminHeaders())
                #expect(response.status == .notFound, "\(method) \(uri)")
                #expect(response.problemCode == "key_not_found", "\(method) \(uri)")
            }
        }
    }

    // MARK: Usage

    @Test func usageIsTheCLIObjectAndResetIsLogged() async throws {
        let store = MemoryKeyStore()
        let clock = ManualWallClock(SystemWallClock().now)
        let logs = LogCapture()
        let (key, secret) = try await makeKey(in: store, limits: ["3/total"], now: clock.now)
        try await withDataPlane(store: store, clock: clock) { port in
            for _ in 0..<4 { _ = try await httpRequest(port: port, .GET, "/api1", headers: [("token", secret)]) }
        }
        let app = try adminApp(store: store, clock: clock, logs: logs)
        try await app.test(.router) { client in
            let usage = try await client.execute(uri: "/admin/v1/keys/\(key.id)/usage", method: .get, headers: adminHeaders())
            #expect(usage.status == .ok)
            let expected = UsageReport(key: key, usage: try await store.usage(id: key.id), now: clock.now)
            #expect(try JSONDecoder().decode(UsageReport.self, from: Data(usage.text.utf8)) == expected)
            let object = try jsonObject(usage)
            let apis = try #require(object["apis"] as? [String: [String: Any]])
            #expect(apis["api1"]?["admitted"] as? Int == 3)
            #expect(apis["api1"]?["denied"] as? Int == 1)

            let bad = try await client.execute(
                uri: "/admin/v1/keys/\(key.id)/usage/reset", method: .post, headers: adminHeaders(), body: body(#"{"x":1}"#))
            #expect(bad.status == .badRequest)
            #expect(try await store.usage(id: key.id)?.apis["api1"]?.admitted == 3)

            let reset = try await client.execute(uri: "/admin/v1/keys/\(key.id)/usage/reset", method: .post, headers: adminHeaders())
            #expect(reset.status == .ok)
            let requestID = try #require(reset.headers[.requestID])
            let limits = try #require(try jsonObject(reset)["limits"] as? [[String: Any]])
            #expect(limits.first?["remaining"] as? Int == 3)
            let line = try #require(logs.all.first { $0.contains("usage reset") })
            #expect(line.contains("request_id=\(requestID)"))
            #expect(line.contains("key_id=\(key.id)"))
            #expect(line.contains("remote="))
            #expect(line.contains("at=\(clock.now)"))
            #expect(!logs.text.contains(secret))
        }
    }

    @Test func exportStreamsEveryKeyInEachFormat() async throws {
        let store = MemoryKeyStore()
        let count = UsageExport.pageSize * 2 + 7  // three pages
        for index in 0..<count {
            try await makeKey(in: store, limits: index % 2 == 0 ? ["10/day"] : [])
        }
        let ids = try await store.allKeys().map(\.id.rawValue)
        let app = try adminApp(store: store)
        try await app.test(.router) { client in
            let json = try await client.execute(uri: "/admin/v1/usage", method: .get, headers: adminHeaders())
            #expect(json.status == .ok)
            #expect(json.headers[.contentType] == "application/json")
            #expect(try jsonArray(json).compactMap { $0["id"] as? String } == ids)

            let ndjson = try await client.execute(uri: "/admin/v1/usage?format=ndjson", method: .get, headers: adminHeaders())
            #expect(ndjson.headers[.contentType] == "application/x-ndjson")
            let lines = ndjson.text.split(separator: "\n")
            #expect(lines.count == count)
            #expect(
                try lines.map { try JSONDecoder().decode(UsageReport.self, from: Data($0.utf8)).id.rawValue } == ids)

            let csv = try await client.execute(uri: "/admin/v1/usage?format=csv", method: .get, headers: adminHeaders())
            #expect(csv.headers[.contentType] == "text/csv; charset=utf-8")
            let rows = csv.text.split(separator: "\r\n")
            #expect(rows.first.map(String.init) == UsageExport.csvHeader)
            #expect(rows.count == count + 1)
            #expect(Set(rows.dropFirst().map { String($0.prefix { $0 != "," }) }) == Set(ids))

            let bad = try await client.execute(uri: "/admin/v1/usage?format=xml", method: .get, headers: adminHeaders())
            #expect(bad.status == .badRequest)
            #expect(bad.problemField == "format")
        }
        let empty = try adminApp(store: MemoryKeyStore())
        try await empty.test(.router) { client in
            let json = try await client.execute(uri: "/admin/v1/usage", method: .get, headers: adminHeaders())
            #expect(try jsonArray(json).isEmpty)
        }
    }

    @Test func csvFieldsAreQuotedAndDefused() {
        #expect(UsageExport.csvField("plain") == "plain")
        #expect(UsageExport.csvField("a,b") == "\"a,b\"")
        #expect(UsageExport.csvField("say \"hi\"") == "\"say \"\"hi\"\"\"")
        #expect(UsageExport.csvField("=SUM(A1)") == "'=SUM(A1)")
        #expect(UsageExport.csvField("@x,y") == "\"'@x,y\"")
    }
}
