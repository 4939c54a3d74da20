import Foundation
import NIOHTTP1
import Testing
import TollgateCore
import TollgateTestSupport

/// The commands issue 7 adds (`keys update`, `keys rotate`, `usage --format`, `usage reset`)
/// and `serve`'s admin token, run as a user runs them: the built binary on a real file.
@Suite struct AdminCLITests {
    let cli: CLIStore
    var directory: URL { cli.directory }
    var store: String { cli.store }

    init() throws {
        cli = try CLIStore()
    }

    func createKey(_ extra: [String]) async throws -> (id: String, key: String) {
        try await cli.createKey(extra)
    }

    @Test func updateChangesWhatIsGivenAndKeepsTheRest() async throws {
        let (id, key) = try await createKey(["--name", "a", "--scope", "api1", "--limit", "api1:10/minute", "--expires", "30d"])
        let updated = try await tollgate([
            "keys", "update", id, "--name", "b", "--scope", "api1", "--scope", "api2", "--limit", "5/day", "--expires", "never", "--json",
            "--store", store,
        ])
        #expect(updated.status == 0, "\(updated.stderr)")
        let object = try #require(try updated.json() as? [String: Any])
        #expect(object["name"] as? String == "b")
        #expect(object["scopes"] as? [String] == ["api1", "api2"])
        #expect(object["limits"] as? [String] == ["5/day"])
        #expect(object["expires_at"] == nil)
        #expect(!updated.stdout.contains(key))

        let named = try await tollgate(["keys", "update", id, "--name", "c", "--json", "--store", store])
        let kept = try #require(try named.json() as? [String: Any])
        #expect(kept["scopes"] as? [String] == ["api1", "api2"] && kept["limits"] as? [String] == ["5/day"])
        let unlimited = try #require(
            try await tollgate(["keys", "update", id, "--unlimited", "--json", "--store", store]).json() as? [String: Any])
        #expect(unlimited["limits"] as? [String] == [])

        // A bad limit changes nothing and says what to write.
        let bad = try await tollgate(["keys", "update", id, "--name", "d", "--limit", "ten/day", "--store", store])
        #expect(bad.status == 1)
        #expect(bad.stderr.contains("N/PERIOD"))
        let shown = try #require(try await tollgate(["keys", "show", id, "--json", "--store", store]).json() as? [String: Any])
        #expect(shown["name"] as? String == "c")

        let missing = try await tollgate(["keys", "update", "key_missing", "--name", "x", "--store", store])
        #expect(missing.status == 1)
        #expect(missing.stderr.contains("tollgate keys list"))
        #expect(try await tollgate(["keys", "update", id, "--store", store]).status == 64)
        #expect(try await tollgate(["keys", "update", id, "--limit", "1/day", "--unlimited", "--store", store]).status == 64)
    }

    /// Two commands editing different fields of one key at once (two operators, or a
    /// command and a server on one store) both land: each writes only what it was given.
    @Test func racingUpdatesOfDifferentFieldsBothLand() async throws {
        let (id, _) = try await createKey(["--name", "a", "--limit", "1/day"])
        for round in 1...5 {
            async let named = tollgate(["keys", "update", id, "--name", "round-\(round)", "--store", store])
            async let limited = tollgate(["keys", "update", id, "--limit", "\(round)/day", "--store", store])
            let (a, b) = try await (named, limited)
            #expect(a.status == 0 && b.status == 0, "\(a.stderr) \(b.stderr)")
            let shown = try #require(try await tollgate(["keys", "show", id, "--json", "--store", store]).json() as? [String: Any])
            #expect(shown["name"] as? String == "round-\(round)")
            #expect(shown["limits"] as? [String] == ["\(round)/day"])
        }
    }

    /// Rotation from the CLI reaches a running server through the store: the new secret is
    /// served, the old one is refused once a 0 s overlap has passed; usage carries over.
    @Test func rotateGivesANewSecretThatARunningServerTakes() async throws {
        let (id, old) = try await createKey(["--scope", "*", "--limit", "10/total"])
        let server = try await ServerProcess(arguments: ["--store", store], directory: directory)
        #expect(try await httpRequest(port: server.port, .GET, "/api1", headers: [("token", old)]).status == 200)

        let rotated = try await tollgate(["keys", "rotate", id, "--overlap", "0s", "--json", "--store", store])
        #expect(rotated.status == 0, "\(rotated.stderr)")
        let object = try #require(try rotated.json() as? [String: Any])
        let new = try #require(object["key"] as? String)
        #expect(KeySecret.isPlausible(new) && new != old)
        #expect(object["id"] as? String == id)
        #expect(object["previous_key_expires_at"] is String)

        #expect(
            try await eventually(timeout: .seconds(3)) {
                try await httpRequest(port: server.port, .GET, "/api1", headers: [("token", new)]).status == 200
            })
        let refused = try await httpRequest(port: server.port, .GET, "/api1", headers: [("token", old)])
        #expect(refused.status == 401)
        #expect(refused.problemCode == "key_revoked")
        #expect(await server.stop() == 0)
        let usage = try #require(try await tollgate(["usage", id, "--json", "--store", store]).json() as? [String: Any])
        let apis = try #require(usage["apis"] as? [String: [String: Any]])
        #expect(apis["api1"]?["admitted"] as? Int == 2)

        let text = try await tollgate(["keys", "rotate", id, "--store", store])
        #expect(text.status == 0)
        #expect(text.stdout.contains("shown this once"))
        #expect(try await tollgate(["keys", "rotate", id, "--overlap", "forever", "--store", store]).status == 1)
        #expect(try await tollgate(["keys", "rotate", "key_missing", "--store", store]).status == 1)
        _ = try await tollgate(["keys", "revoke", id, "--store", store])
        let revoked = try await tollgate(["keys", "rotate", id, "--store", store])
        #expect(revoked.status == 1)
        #expect(revoked.stderr.contains("revoked"))
    }

    @Test func usageExportsEveryKeyAsCSVOrNDJSON() async throws {
        var ids: [String] = []
        for index in 0..<3 { ids.append(try await createKey(["--name", "k\(index),x", "--limit", "5/day"]).id) }
        let csv = try await tollgate(["usage", "--format", "csv", "--store", store])
        #expect(csv.status == 0, "\(csv.stderr)")
        let rows = csv.stdout.split(separator: "\r\n")
        #expect(rows.first?.hasPrefix("key_id,name,kind,") == true)
        #expect(rows.count == 4)
        #expect(rows.dropFirst().allSatisfy { $0.contains("\"k") && $0.contains(",limit,") })

        let ndjson = try await tollgate(["usage", "--format", "ndjson", "--store", store])
        let lines = ndjson.stdout.split(separator: "\n")
        #expect(lines.count == 3)
        let parsed = try lines.map { try #require(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]) }
        #expect(parsed.compactMap { $0["id"] as? String }.sorted() == ids.sorted())

        #expect(try await tollgate(["usage", "--format", "xml", "--store", store]).status == 64)
        #expect(try await tollgate(["usage", ids[0], "--format", "csv", "--store", store]).status == 64)
        #expect(try await tollgate(["usage", "--format", "csv", "--json", "--store", store]).status == 64)
        // The old forms still work: `usage ID`, `usage show ID`.
        #expect(try await tollgate(["usage", ids[0], "--json", "--store", store]).status == 0)
        #expect(try await tollgate(["usage", "show", ids[0], "--store", store]).status == 0)
    }

    /// `usage reset` while a server runs: the server takes the reset from the store.
    @Test func usageResetGivesTheFullQuotaBackToARunningServer() async throws {
        let (id, key) = try await createKey(["--scope", "*", "--limit", "1/total"])
        let server = try await ServerProcess(arguments: ["--store", store], directory: directory)
        #expect(try await httpRequest(port: server.port, .GET, "/api1", headers: [("token", key)]).status == 200)
        #expect(try await httpRequest(port: server.port, .GET, "/api1", headers: [("token", key)]).status == 429)
        let reset = try await tollgate(["usage", "reset", id, "--store", store])
        #expect(reset.status == 0, "\(reset.stderr)")
        #expect(reset.stdout.contains(id))
        #expect(
            try await eventually(timeout: .seconds(3)) {
                try await httpRequest(port: server.port, .GET, "/api1", headers: [("token", key)]).status == 200
            })
        #expect(await server.stop() == 0)
        let missing = try await tollgate(["usage", "reset", "key_missing", "--store", store])
        #expect(missing.status == 1)
        #expect(missing.stderr.contains("tollgate keys list"))
    }

    /// The admin API is served only with a token, from a file or the environment, and the
    /// token never reaches the server's output.
    @Test func serveTakesTheAdminTokenFromAFileOrTheEnvironment() async throws {
        let token = "cli-admin-token-\(UUID().uuidString)"
        let file = directory.appendingPathComponent("admin-token")
        try (token + "\n").write(to: file, atomically: true, encoding: .utf8)
        let withFile = try await ServerProcess(arguments: ["--store", "memory:", "--admin-token-file", file.path], directory: directory)
        let fromEnvironment = try await ServerProcess(
            arguments: ["--store", "memory:"], directory: directory, shellPrefix: "export TOLLGATE_ADMIN_TOKEN='\(token)'")
        let without = try await ServerProcess(arguments: ["--store", "memory:"], directory: directory)
        for server in [withFile, fromEnvironment] {
            #expect(try await httpRequest(port: server.adminPort, .GET, "/admin/v1/keys").status == 401)
            #expect(
                try await httpRequest(port: server.adminPort, .GET, "/admin/v1/keys", headers: [("Authorization", "Bearer wrong")]).status
                    == 401)
            let listed = try await httpRequest(
                port: server.adminPort, .GET, "/admin/v1/keys", headers: [("Authorization", "Bearer \(token)")])
            #expect(listed.status == 200)
            #expect(listed.body == "[]")
            // Never on the data plane.
            #expect(
                try await httpRequest(port: server.port, .GET, "/admin/v1/keys", headers: [("Authorization", "Bearer \(token)")]).status
                    == 404)
        }
        #expect(
            try await httpRequest(port: without.adminPort, .GET, "/admin/v1/keys", headers: [("Authorization", "Bearer \(token)")]).status
                == 404)
        for server in [withFile, fromEnvironment, without] {
            #expect(await server.stop() == 0)
            #expect(!server.stdout.contains(token) && !server.stderr.contains(token))
        }

        let both = try await tollgate(["serve", "--store", "memory:", "--admin-token", "a", "--admin-token-file", file.path])
        #expect(both.status == 64)
        let unreadable = try await tollgate([
            "serve", "--store", "memory:", "--port", "0", "--admin-port", "0", "--admin-token-file", "/nonexistent/token",
        ])
        #expect(unreadable.status == 1)
        #expect(unreadable.stderr.contains("--admin-token-file"))
        let empty = directory.appendingPathComponent("empty-token")
        try "\n".write(to: empty, atomically: true, encoding: .utf8)
        let blank = try await tollgate([
            "serve", "--store", "memory:", "--port", "0", "--admin-port", "0", "--admin-token-file", empty.path,
        ])
        #expect(blank.status == 1)
        #expect(blank.stderr.contains("openssl rand"))
    }
}
