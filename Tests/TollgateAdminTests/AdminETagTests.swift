import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Testing
import TollgateAdmin
import TollgateCore
import TollgateTestSupport

/// Optimistic concurrency for HTTP clients: `GET` and `PATCH` carry the record's `ETag`;
/// a `PATCH` or `DELETE` whose `If-Match` no longer matches is `412` and changes nothing.
@Suite struct AdminETagTests {
    func headers(ifMatch: String?, json: Bool = true) -> HTTPFields {
        var fields = adminHeaders(json: json)
        if let ifMatch { fields[.ifMatch] = ifMatch }
        return fields
    }

    @Test func aStaleIfMatchIsRefusedAndChangesNothing() async throws {
        let store = MemoryKeyStore()
        let key = try await makeKey(in: store, limits: ["5/day"]).key
        let uri = "/admin/v1/keys/\(key.id)"
        try await adminApp(store: store).test(.router) { client in
            let shown = try await client.execute(uri: uri, method: .get, headers: adminHeaders())
            let tag = try #require(shown.headers[.eTag])
            #expect(tag.hasPrefix("\"") && tag.hasSuffix("\""))

            let patched = try await client.execute(
                uri: uri, method: .patch, headers: headers(ifMatch: tag), body: body(#"{"name":"first"}"#))
            #expect(patched.status == .ok)
            let newTag = try #require(patched.headers[.eTag])
            #expect(newTag != tag)
            #expect(try await client.execute(uri: uri, method: .get, headers: adminHeaders()).headers[.eTag] == newTag)

            // The tag read before that PATCH is stale: 412 problem+json, nothing applied.
            let stale = try await client.execute(
                uri: uri, method: .patch, headers: headers(ifMatch: tag), body: body(#"{"limits":[]}"#))
            #expect(stale.status == .preconditionFailed)
            #expect(stale.problemCode == "precondition_failed")
            #expect(stale.problem?["status"] as? Int == 412)
            #expect(try await store.key(id: key.id)?.limits.map(\.description) == ["5/day"])
            let staleDelete = try await client.execute(uri: uri, method: .delete, headers: headers(ifMatch: tag, json: false))
            #expect(staleDelete.status == .preconditionFailed)
            #expect(staleDelete.problemCode == "precondition_failed")
            #expect(try await store.key(id: key.id)?.revokedAt == nil)

            // Weak tags and tags this API never made never match.
            for other in ["W/\(newTag)", "\"nope\"", "\"v\"", "garbage"] {
                let refused = try await client.execute(
                    uri: uri, method: .patch, headers: headers(ifMatch: other), body: body(#"{"name":"x"}"#))
                #expect(refused.status == .preconditionFailed, "\(other)")
            }
            #expect(try await store.key(id: key.id)?.name == "first")

            // `*` and a list holding the current tag match.
            let any = try await client.execute(uri: uri, method: .patch, headers: headers(ifMatch: "*"), body: body(#"{"name":"any"}"#))
            #expect(any.status == .ok)
            let current = try #require(any.headers[.eTag])
            let listed = try await client.execute(
                uri: uri, method: .patch, headers: headers(ifMatch: "\(tag), \(current)"), body: body(#"{"name":"listed"}"#))
            #expect(listed.status == .ok)
            let last = try #require(listed.headers[.eTag])

            // An unknown key is 404 whatever the If-Match; a current one revokes.
            let missing = try await client.execute(
                uri: "/admin/v1/keys/key_missing", method: .delete, headers: headers(ifMatch: last, json: false))
            #expect(missing.status == .notFound)
            let revoked = try await client.execute(uri: uri, method: .delete, headers: headers(ifMatch: last, json: false))
            #expect(revoked.status == .noContent)
            #expect(try await store.key(id: key.id)?.revokedAt != nil)
        }
    }

    /// The OpenAPI document (which the CI fuzzes the API from) says all of this.
    @Test func theDocumentNamesTheTagsAndThe412() throws {
        let operations = try AdminDocumentTests.documentedOperations()
        for name in ["PATCH /admin/v1/keys/{id}", "DELETE /admin/v1/keys/{id}"] {
            let operation = try #require(operations[name])
            let parameters = try #require(operation["parameters"] as? [[String: String]])
            #expect(parameters.contains { $0["$ref"] == "#/components/parameters/IfMatch" }, "\(name)")
            #expect((operation["responses"] as? [String: Any])?["412"] != nil, "\(name)")
        }
        for name in ["GET /admin/v1/keys/{id}", "PATCH /admin/v1/keys/{id}"] {
            let ok = try #require((operations[name]?["responses"] as? [String: Any])?["200"] as? [String: Any])
            #expect((ok["headers"] as? [String: Any])?["ETag"] != nil, "\(name)")
        }
    }

    /// Two clients read the same tag and both PATCH with it: exactly one wins, the other
    /// gets 412 (the check and the write are one step at the store).
    @Test(arguments: GatewayStore.allCases)
    func ofTwoPatchesWithOneTagExactlyOneLands(kind: GatewayStore) async throws {
        try await withGateway(kind) { _, store in
            let key = try await makeKey(in: store).key
            let uri = "/admin/v1/keys/\(key.id)"
            try await adminApp(store: store).test(.router) { client in
                for round in 1...10 {
                    let tag = try #require(try await client.execute(uri: uri, method: .get, headers: adminHeaders()).headers[.eTag])
                    async let a = client.execute(
                        uri: uri, method: .patch, headers: headers(ifMatch: tag), body: body(#"{"name":"a\#(round)"}"#))
                    async let b = client.execute(
                        uri: uri, method: .patch, headers: headers(ifMatch: tag), body: body(#"{"name":"b\#(round)"}"#))
                    let statuses = try await [a.status, b.status].sorted { $0.code < $1.code }
                    #expect(statuses == [.ok, .preconditionFailed], "round \(round)")
                }
            }
        }
    }
}
