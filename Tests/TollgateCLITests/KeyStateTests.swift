import Foundation
import Testing
import TollgateTestSupport

/// What the key commands accept, warn about and report, run as a user runs them.
@Suite struct KeyStateTests {
    let cli: CLIStore
    var store: String { cli.store }

    init() throws {
        cli = try CLIStore()
    }

    // MARK: Import refuses what it cannot read as written

    /// A misspelt member would have imported a key without its limits or expiry.
    @Test(arguments: [
        (#"{"key": "k2", "scopes": ["*"], "limit": ["1/day"]}"#, #""limit" is not a member of a key line (did you mean "limits"?)"#),
        (#"{"key": "k2", "scopes": ["*"], "expires": "30d"}"#, #"did you mean "expires_at"?"#),
        (#"{"key": "k2", "scopes": ["*"], "limits": ["1/day"], "limits": []}"#, #""limits" appears twice"#),
        (#"{"key": "k2", "key": "k3", "scopes": ["*"]}"#, #""key" appears twice"#),
    ])
    func importRefusesUnknownAndRepeatedMembers(line: String, message: String) async throws {
        let file = #"{"key": "k1", "scopes": ["*"]}"# + "\n" + line + "\n"
        let result = try await tollgate(["keys", "import", "-", "--store", store], stdin: file)
        #expect(result.status == 1)
        #expect(result.stderr.hasPrefix("tollgate: standard input line 2: "), "\(result.stderr)")
        #expect(result.stderr.contains(message), "\(result.stderr)")
        #expect(result.stderr.contains("nothing was imported"))
        #expect(result.stderr.split(separator: "\n").count == 1)
        #expect(try await cli.keyCount() == 0)
    }

    /// Names that would disguise another key in a listing, and scope lists no key needs.
    @Test(arguments: [
        (["--name", "paypal\u{202E}lanif"], "U+202E"),
        (["--name", "two\u{2028}lines"], "U+2028"),
        (["--name", "zero\u{200B}width"], "U+200B"),
        (["--scope", String(repeating: "a", count: 257)], "longer than 256"),
    ])
    func createRefusesHiddenCharactersAndOversizedScopes(arguments: [String], hint: String) async throws {
        let result = try await tollgate(["keys", "create", "--store", store] + arguments)
        #expect(result.status == 1)
        #expect(result.stderr.contains(hint), "\(result.stderr)")
        #expect(try await cli.keyCount() == 0)
    }

    @Test func importRefusesTooManyScopes() async throws {
        let scopes = (0...64).map { "\"api\($0)\"" }.joined(separator: ",")
        let result = try await tollgate(["keys", "import", "-", "--store", store], stdin: "{\"key\": \"k\", \"scopes\": [\(scopes)]}\n")
        #expect(result.status == 1)
        #expect(result.stderr.contains("at most 64 scopes"), "\(result.stderr)")
    }

    // MARK: Warnings about routes, only when the routes are known

    func routeFile(_ text: String) throws -> String {
        let path = cli.directory.appendingPathComponent("tollgate.yaml").path
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// `serve --config` serves `orders`: a command run apart from it knows that only from
    /// the same file, and without it says nothing about routes.
    @Test func routeWarningsComeOnlyWithTheRouteFile() async throws {
        let config = try routeFile(
            """
            routes:
              - name: orders
                prefix: /v1/orders
                upstream: http://127.0.0.1:9
              - name: ping
                exact: true
                answer:
                  body: pong
            """)
        let arguments = ["keys", "create", "--store", store, "--scope", "orders*", "--limit", "orders*:100/minute"]
        let unknown = try await tollgate(arguments)
        #expect(unknown.status == 0)
        #expect(unknown.stderr.isEmpty, "the routes are not known: \(unknown.stderr)")
        let known = try await tollgate(arguments + ["--config", config])
        #expect(known.status == 0)
        #expect(known.stderr.isEmpty, "orders* reaches the orders route: \(known.stderr)")
        // Below a prefix route is served; below an exact one is not.
        let below = try await tollgate(["keys", "create", "--store", store, "--scope", "orders/", "--scope", "ping/", "--config", config])
        #expect(!below.stderr.contains("'orders/'"), "\(below.stderr)")
        #expect(below.stderr.contains("scope 'ping/' reaches none of the APIs"), "\(below.stderr)")
        let cased = try await tollgate([
            "keys", "create", "--store", store, "--scope", "*", "--limit", "Orders:5/total", "--config", config,
        ])
        #expect(cased.stderr.hasPrefix("tollgate: warning: "), "\(cased.stderr)")
        #expect(cased.stderr.contains("case-sensitive"))

        let imported = try await tollgate(
            ["keys", "import", "-", "--store", store, "--config", config], stdin: #"{"key": "i1", "scopes": ["api1"]}"# + "\n")
        #expect(imported.status == 0)
        #expect(imported.stderr.contains("line 1: scope 'api1' reaches none"), "\(imported.stderr)")

        let other = try await cli.createKey(["--scope", "*"]).id
        let updated = try await tollgate(["keys", "update", other, "--scope", "api1", "--config", config, "--store", store])
        #expect(updated.status == 0)
        #expect(updated.stderr.contains("scope 'api1' reaches none"), "\(updated.stderr)")

        try "routes: nope\n".write(toFile: config, atomically: true, encoding: .utf8)
        let bad = try await tollgate(arguments + ["--config", config])
        #expect(bad.status == 1)
        #expect(bad.stderr.split(separator: "\n").count == 1, "\(bad.stderr)")
        #expect(bad.stderr.contains("routes check"))
    }

    // MARK: Revoked keys say so

    @Test func aRevokedKeyShowsItsStateEverywhere() async throws {
        let (id, _) = try await cli.createKey(["--name", "old", "--scope", "*", "--limit", "20/day"])
        #expect(try await tollgate(["keys", "revoke", id, "--store", store]).status == 0)

        let text = try await tollgate(["usage", id, "--store", store])
        #expect(text.status == 0)
        #expect(text.stdout.contains("[revoked: every request is refused]"), "\(text.stdout)")
        #expect(!text.stdout.contains("20 left"), "\(text.stdout)")
        let json = try #require(try await tollgate(["usage", id, "--json", "--store", store]).json() as? [String: Any])
        #expect(json["status"] as? String == "revoked")

        let reset = try await tollgate(["usage", "reset", id, "--store", store])
        #expect(reset.status == 0)
        #expect(reset.stdout.contains("revoked, so it stays refused"), "\(reset.stdout)")
        #expect(!reset.stdout.contains("full quota"))

        let renamed = try await tollgate(["keys", "update", id, "--name", "archived", "--store", store])
        #expect(renamed.status == 0)
        #expect(renamed.stdout.contains("name 'archived'"), "\(renamed.stdout)")
        #expect(renamed.stdout.contains("revoked, so it stays refused"), "\(renamed.stdout)")
    }

    // MARK: Listings agree

    @Test func listAndShowWriteScopesAndLimitsAlike() async throws {
        let (id, _) = try await cli.createKey(["--scope", "api1*", "--scope", "api2", "--limit", "api1:10/minute", "--limit", "5/day"])
        let list = try await tollgate(["keys", "list", "--store", store])
        let show = try await tollgate(["keys", "show", id, "--store", store])
        for output in [list.stdout, show.stdout] {
            #expect(output.contains("api1*, api2"), "\(output)")
            #expect(output.contains("api1:10/minute, 5/day"), "\(output)")
        }
    }
}
