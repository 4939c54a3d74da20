import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Testing
import TollgateAdmin
import TollgateCore
import TollgateTestSupport

/// The admin API on a real port over a live data plane, on every store: what it changes
/// holds on the data plane at once, and rotation's overlap follows an injected clock.
@Suite struct AdminLiveTests {
    @Test(arguments: GatewayStore.allCases)
    func createUpdateRotateRevokeTakeEffectAtOnce(kind: GatewayStore) async throws {
        let clock = ManualWallClock(SystemWallClock().now)
        let logs = LogCapture()
        try await withGateway(kind, clock: clock) { port, store in
            let app = try adminApp(store: store, clock: clock, logs: logs)
            try await app.test(.live) { client in
                let created = try await client.execute(
                    uri: "/admin/v1/keys", method: .post, headers: adminHeaders(json: true),
                    body: body(#"{"name":"live","scopes":["api1"],"limits":["api1:2/day","10/total"]}"#))
                #expect(created.status == .created)
                let object = try jsonObject(created)
                let id = try #require(object["id"] as? String)
                let first = try #require(object["key"] as? String)

                // Created: served at once, within its scope and quota.
                #expect(try await get(port, "/api1", key: first).status == 200)
                #expect(try await get(port, "/api2", key: first).status == 403)
                #expect(try await get(port, "/api1", key: first).status == 200)
                #expect(try await get(port, "/api1", key: first).status == 429)

                // Updated: a wider scope and a larger quota hold at once; what was used stays.
                let patched = try await client.execute(
                    uri: "/admin/v1/keys/\(id)", method: .patch, headers: adminHeaders(json: true),
                    body: body(#"{"scopes":["*"],"limits":["api1:3/day","10/total"]}"#))
                #expect(patched.status == .ok)
                #expect(try await get(port, "/api2", key: first).status == 200)
                #expect(try await get(port, "/api1", key: first).status == 200)
                #expect(try await get(port, "/api1", key: first).status == 429)

                // Rotated with a 60 s overlap: both secrets work and share the quota.
                let rotated = try await client.execute(
                    uri: "/admin/v1/keys/\(id)/rotate", method: .post, headers: adminHeaders(json: true), body: body(#"{"overlap":"60s"}"#))
                #expect(rotated.status == .ok)
                let rotatedObject = try jsonObject(rotated)
                let second = try #require(rotatedObject["key"] as? String)
                #expect(second != first)
                #expect(rotatedObject["id"] as? String == id)
                #expect(rotatedObject["previous_key_expires_at"] as? String == clock.now.adding(seconds: 60).iso8601)
                #expect(try await get(port, "/api2", key: second).status == 200)
                #expect(try await get(port, "/api3", key: first).status == 200)
                let usage = try jsonObject(
                    try await client.execute(uri: "/admin/v1/keys/\(id)/usage", method: .get, headers: adminHeaders()))
                let total = try #require((usage["limits"] as? [[String: Any]])?.first { $0["period"] as? String == "total" })
                #expect(total["used"] as? Int == 6)  // 4 admitted before the rotation, one with each secret after

                // After the overlap the old secret is refused as revoked; the new one works.
                clock.advance(seconds: 61)
                let refused = try await get(port, "/api2", key: first)
                #expect(refused.status == 401)
                #expect(refused.problemCode == "key_revoked")
                #expect(try await get(port, "/api2", key: second).status == 200)

                // Revoked: refused at once.
                let revoked = try await client.execute(uri: "/admin/v1/keys/\(id)", method: .delete, headers: adminHeaders())
                #expect(revoked.status == .noContent)
                let after = try await get(port, "/api2", key: second)
                #expect(after.status == 401)
                #expect(after.problemCode == "key_revoked")
                let again = try await client.execute(
                    uri: "/admin/v1/keys/\(id)/rotate", method: .post, headers: adminHeaders(json: true), body: body("{}"))
                #expect(again.status == .conflict)
                #expect(again.problemCode == "key_revoked")

                // Usage reset through the API holds at once too (a fresh key, as this one is revoked).
                let fresh = try jsonObject(
                    try await client.execute(
                        uri: "/admin/v1/keys", method: .post, headers: adminHeaders(json: true),
                        body: body(#"{"scopes":["*"],"limits":["1/total"]}"#)))
                let freshSecret = try #require(fresh["key"] as? String)
                let freshID = try #require(fresh["id"] as? String)
                #expect(try await get(port, "/api1", key: freshSecret).status == 200)
                #expect(try await get(port, "/api1", key: freshSecret).status == 429)
                let reset = try await client.execute(uri: "/admin/v1/keys/\(freshID)/usage/reset", method: .post, headers: adminHeaders())
                #expect(reset.status == .ok)
                #expect(try await get(port, "/api1", key: freshSecret).status == 200)

                for secret in [first, second, freshSecret] { #expect(!logs.text.contains(secret)) }
            }
        }
    }

    @Test func rotationBodyIsValidated() async throws {
        let store = MemoryKeyStore()
        let key = try await makeKey(in: store).key
        let app = try adminApp(store: store)
        try await app.test(.router) { client in
            for input in [#"{"overlap":"forever"}"#, #"{"overlap":24}"#, #"{"overlap":"400d"}"#, #"{"overlap":"1h","x":1}"#, "nope"] {
                let response = try await client.execute(
                    uri: "/admin/v1/keys/\(key.id)/rotate", method: .post, headers: adminHeaders(json: true), body: body(input))
                #expect(response.status == .badRequest, "\(input)")
            }
            #expect(try await store.key(id: key.id)?.previousDigest == nil)
            let defaulted = try await client.execute(uri: "/admin/v1/keys/\(key.id)/rotate", method: .post, headers: adminHeaders())
            #expect(defaulted.status == .ok)
            let until = try #require(try await store.key(id: key.id)?.previousDigestExpiresAt)
            let created = try #require(try await store.key(id: key.id)?.createdAt)
            #expect(until > created.adding(seconds: 86_000))
        }
    }
}
