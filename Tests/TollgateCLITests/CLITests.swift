import Foundation
import NIOHTTP1
import Synchronization
import Testing
import TollgateCore
import TollgateTestSupport

/// The CLI as a user runs it: the built binary, a real SQLite file, real processes.
@Suite struct CLITests {
    let cli: CLIStore
    var directory: URL { cli.directory }
    var store: String { cli.store }

    init() throws {
        cli = try CLIStore()
    }

    func createKey(_ extra: [String]) async throws -> (id: String, key: String) {
        try await cli.createKey(extra)
    }

    @Test func createListShowRevokeAndUsageSpeakJSON() async throws {
        let (id, key) = try await createKey([
            "--name", "alice", "--scope", "api1", "--limit", "api1:10/minute", "--limit", "100/day", "--expires", "30d",
        ])
        #expect(key.hasPrefix("tg_"))
        #expect(KeySecret.isPlausible(key))

        let list = try #require(try await tollgate(["keys", "list", "--json", "--store", store]).json() as? [[String: Any]])
        #expect(list.count == 1)
        #expect(list[0]["id"] as? String == id)
        #expect(list[0]["key"] == nil, "listings never hold secrets")
        #expect(list[0]["limits"] as? [String] == ["api1:10/minute", "100/day"])

        let shown = try #require(try await tollgate(["keys", "show", id, "--json", "--store", store]).json() as? [String: Any])
        #expect(shown["status"] as? String == "active")
        #expect(shown["expires_at"] is String)

        let usage = try #require(try await tollgate(["usage", id, "--json", "--store", store]).json() as? [String: Any])
        #expect(usage["id"] as? String == id)
        #expect(usage["apis"] is [String: Any])
        let limits = try #require(usage["limits"] as? [[String: Any]])
        #expect(limits.count == 2)
        #expect(Set(limits[0].keys) == ["scope", "limit", "period", "used", "remaining", "resets_at"])
        #expect(limits[0]["scope"] as? String == "api1")
        #expect(limits[0]["remaining"] as? Int == 10)

        let revoke = try await tollgate(["keys", "revoke", id, "--store", store])
        #expect(revoke.status == 0)
        let revoked = try #require(try await tollgate(["keys", "show", id, "--json", "--store", store]).json() as? [String: Any])
        #expect(revoked["status"] as? String == "revoked")

        // Neither the file nor its WAL holds the secret.
        for suffix in ["", "-wal"] {
            let bytes = (try? Data(contentsOf: URL(fileURLWithPath: String(store.dropFirst("sqlite:".count)) + suffix))) ?? Data()
            #expect(bytes.range(of: Data(key.utf8)) == nil)
        }
    }

    @Test(arguments: [
        (["keys", "create", "--limit", "5/weekly"], "N/PERIOD"),
        (["keys", "create", "--scope", "a*b"], "scope pattern"),
        (["keys", "create", "--scope", "api1/*"], "write 'api1/' for everything below /api1, or 'api1*'"),
        (["keys", "create", "--scope", "api1/.."], "'..' segment"),
        (["keys", "create", "--scope", ".."], "'..' segment"),
        (["keys", "create", "--scope", "*", "--limit", "api1/*:1/total"], "write 'api1/'"),
        (["keys", "create", "--expires", "soon"], "'30d'"),
        (["keys", "create", "--key", "tg_madeup"], "checksum"),
        (["keys", "show", "key_nope"], "keys list"),
        (["keys", "revoke", "key_nope"], "keys list"),
        (["usage", "key_nope"], "keys list"),
        (["keys", "create", "--store", "memory:"], "keeps nothing"),
        (["keys", "list", "--store", "postgres://x"], "sqlite:PATH"),
        // Durations and instants out of range are an error, never a trap.
        (["keys", "create", "--expires", "9223372036854775s"], "out of range"),
        (["keys", "create", "--expires", "9223372036854775807s"], "out of range"),
        (["keys", "create", "--expires", "106751991167d"], "out of range"),
        (["keys", "create", "--expires", "9999999999999w"], "out of range"),
        (["keys", "create", "--expires", "2030-01-01T00:00:00+99:99"], "RFC 3339"),
        (["keys", "show", String(repeating: "x", count: 100_000)], "bytes in all"),
        (["keys", "create", "--name", "x\u{1b}[2J"], "control character"),
        (["usage", "key\u{1b}[2J"], "key\\u{1B}[2J"),
    ])
    func errorsSayWhatToDoOnStderrWithAFailingStatus(arguments: [String], hint: String) async throws {
        let withStore = arguments.contains("--store") ? arguments : arguments + ["--store", store]
        _ = try await createKey(["--scope", "*"])  // so that lookups find a database without the key
        let result = try await tollgate(withStore)
        #expect(result.status == 1)
        #expect(result.stdout.isEmpty)
        #expect(result.stderr.contains(hint), "\(result.stderr)")
        #expect(result.stderr.hasPrefix("tollgate: "))
        #expect(result.stderr.split(separator: "\n").count == 1, "one line: \(result.stderr.prefix(300))")
        #expect(result.stderr.utf8.count < 600, "no input is echoed back whole")
    }

    /// Ids follow one grammar; a bad one is refused in one short line and nothing is stored.
    @Test(arguments: [
        "", " ", "a b", "key\u{7}", "-key", "key/1", String(repeating: "k", count: 65), String(repeating: "k", count: 1_000_000),
    ])
    func importRefusesIDsOutsideTheGrammar(id: String) async throws {
        let line = try String(
            decoding: JSONSerialization.data(withJSONObject: ["id": id, "key": "some-secret", "scopes": ["*"]]), as: UTF8.self)
        let result = try await tollgate(
            ["keys", "import", "-", "--store", store], stdin: "{\"key\": \"fine\", \"scopes\": [\"*\"]}\n" + line + "\n")
        #expect(result.status == 1)
        #expect(result.stderr.contains("line 2"), "\(result.stderr.prefix(300))")
        #expect(result.stderr.contains("1 to 64"))
        #expect(result.stderr.split(separator: "\n").count == 1)
        #expect(result.stderr.utf8.count < 600)
        #expect(try await keyCount() == 0, "nothing was imported")
    }

    /// A key or id that appears twice in one file is an error naming both lines, with nothing
    /// imported; what the store already has is still skipped.
    @Test func importRefusesDuplicatesWithinTheFileNamingBothLines() async throws {
        let digest = KeyDigest(secret: "second").hex
        let cases: [(file: String, lines: String)] = [
            (
                "{\"key\": \"first\", \"scopes\": [\"*\"], \"id\": \"k1\"}\n\n{\"key\": \"second\", \"scopes\": [\"*\"], \"id\": \"k1\"}",
                "lines 1 and 3"
            ),
            (
                "{\"key\": \"first\", \"scopes\": [\"*\"]}\n{\"key\": \"other\", \"scopes\": [\"*\"]}\n{\"key\": \"first\", \"scopes\": [\"api1\"]}",
                "lines 1 and 3"
            ),
            ("{\"key\": \"second\", \"scopes\": [\"*\"]}\n{\"digest\": \"\(digest)\", \"scopes\": [\"*\"]}", "lines 1 and 2"),
        ]
        for (file, lines) in cases {
            let result = try await tollgate(["keys", "import", "-", "--store", store], stdin: file)
            #expect(result.status == 1)
            #expect(result.stderr.contains(lines), "\(result.stderr)")
            #expect(result.stderr.contains("nothing was imported"))
            #expect(!result.stderr.contains("first") && !result.stderr.contains("second"), "no secret in an error")
            #expect(try await keyCount() == 0)
        }
        let good = "{\"key\": \"first\", \"scopes\": [\"*\"], \"id\": \"k1\"}\n{\"key\": \"second\", \"scopes\": [\"*\"]}\n"
        #expect(try await tollgate(["keys", "import", "-", "--store", store], stdin: good).stdout.contains("Imported 2 keys"))
        #expect(try await tollgate(["keys", "import", "-", "--store", store], stdin: good).stdout.contains("Imported 0 keys; skipped 2"))
    }

    @Test func importRefusesAnExpiryOutOfRange() async throws {
        let result = try await tollgate(
            ["keys", "import", "-", "--store", store], stdin: "{\"key\": \"k\", \"scopes\": [\"*\"], \"expires_at\": \"106751991167d\"}\n")
        #expect(result.status == 1)
        #expect(result.stderr.contains("line 1") && result.stderr.contains("out of range"), "\(result.stderr)")
    }

    /// Limits that can never meter anything, and zero quotas, are stored with a warning
    /// (those that depend on the routes served: `KeyStateTests`).
    @Test(arguments: [
        (["--scope", "api1", "--limit", "api9:10/minute"], "'api9:10/minute' can never apply"),
        (["--scope", "*", "--limit", "0/total"], "quota of 0"),
        (["--limit", "10/day"], "no scope"),
    ])
    func createWarnsAboutLimitsThatCannotApply(arguments: [String], warning: String) async throws {
        let result = try await tollgate(["keys", "create", "--store", store] + arguments)
        #expect(result.status == 0)
        #expect(result.stderr.hasPrefix("tollgate: warning: "))
        #expect(result.stderr.contains(warning), "\(result.stderr)")
        #expect(try await keyCount() == 1, "a warning does not refuse the key")
    }

    @Test func createDoesNotWarnAboutAKeyWhoseLimitsApply() async throws {
        let result = try await tollgate([
            "keys", "create", "--store", store, "--scope", "api1*", "--limit", "api1:5/minute", "--limit", "9/day",
        ])
        #expect(result.status == 0)
        #expect(result.stderr.isEmpty, "\(result.stderr)")
    }

    @Test func importWarnsByLineNumberAndCapsTheWarnings() async throws {
        var file = "{\"key\": \"useful\", \"scopes\": [\"api1\"], \"limits\": [\"api1:1/day\"]}\n"
        for index in 2...31 { file += "{\"key\": \"k\(index)\", \"scopes\": [\"api1\"], \"limits\": [\"api9:1/day\"]}\n" }
        let result = try await tollgate(["keys", "import", "-", "--store", store], stdin: file)
        #expect(result.status == 0)
        #expect(result.stdout.contains("Imported 31 keys"))
        let lines = result.stderr.split(separator: "\n")
        #expect(lines.count == 21, "\(result.stderr)")
        #expect(lines.first?.contains("line 2: limit 'api9:1/day' can never apply") == true)
        #expect(!result.stderr.contains("line 1:"))
        #expect(lines.last?.contains("10 more") == true)
    }

    /// Commands that only read refuse a missing database, naming it, rather than creating an
    /// empty one that looks like a store without keys.
    @Test(arguments: [
        ["keys", "list"], ["keys", "list", "--json"], ["keys", "show", "key_x"], ["keys", "revoke", "key_x"], ["usage"],
        ["usage", "key_x"],
    ])
    func readingCommandsRefuseAMissingDatabase(arguments: [String]) async throws {
        let missing = directory.appendingPathComponent("tolgate.sqlite").path
        let result = try await tollgate(arguments + ["--store", "sqlite:" + missing])
        #expect(result.status == 1)
        #expect(result.stdout.isEmpty)
        #expect(result.stderr.hasPrefix("tollgate: no database at '\(missing)'"), "\(result.stderr)")
        #expect(result.stderr.split(separator: "\n").count == 1)
        #expect(!FileManager.default.fileExists(atPath: missing), "nothing was created")
    }

    /// A mistyped command is named as unknown, with the commands it could be, in one line.
    @Test(arguments: [
        (["kyes", "list"], "unknown command 'kyes' for 'tollgate': did you mean 'keys'?"),
        (["keys", "lsit"], "unknown command 'lsit' for 'tollgate keys': did you mean 'list'?"),
        (["usgae"], "did you mean 'usage'?"),
        (["frobnicate"], "the commands are serve, keys, usage"),
    ])
    func aMistypedCommandIsUnknownNotServesUsage(arguments: [String], message: String) async throws {
        let result = try await tollgate(arguments)
        #expect(result.status == 64)
        #expect(result.stderr.hasPrefix("tollgate: "))
        #expect(result.stderr.contains(message), "\(result.stderr)")
        #expect(result.stderr.split(separator: "\n").count == 1, "\(result.stderr)")
        #expect(!result.stderr.contains("--admin-port"), "not serve's usage")
    }

    @Test func helpAndVersionSayWhatEachCommandAccepts() async throws {
        let version = try await tollgate(["--version"])
        #expect(version.status == 0)
        #expect(version.stdout.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: ".").count == 3, "\(version.stdout)")
        // `usage` is a group now (`show` the default, `reset`); its own help lists them.
        for command in [
            ["keys", "list"], ["keys", "show"], ["keys", "create"], ["keys", "update"], ["keys", "rotate"], ["keys", "revoke"],
            ["keys", "import"], ["usage", "show"], ["usage", "reset"],
        ] {
            let help = try await tollgate(command + ["--help"])
            #expect(help.status == 0)
            #expect(help.stdout.contains("sqlite:PATH"))
            #expect(!help.stdout.contains("memory:"), "\(command) refuses memory:, so its help must not offer it")
        }
        #expect(try await tollgate(["serve", "--help"]).stdout.contains("memory:"))
        #expect(try await tollgate(["usage", "--help"]).stdout.contains("reset"))
        let create = try await tollgate(["keys", "create", "--help"]).stdout
        for form in ["90s", "15m", "12h", "30d", "4w", "2030-01-01", "RFC 3339"] {
            #expect(create.contains(form), "--expires help lists \(form)")
        }
    }

    /// Text output names APIs as the JSON does, shows each key's expiry, and says "unlimited"
    /// for a key without limits.
    @Test func textOutputMatchesTheJSONAndSaysUnlimited() async throws {
        let (id, key) = try await createKey(["--scope", "api1", "--name", "open"])
        _ = try await createKey(["--scope", "api2", "--limit", "5/day", "--expires", "2030-01-01"])
        let server = try await ServerProcess(arguments: ["--store", store], directory: directory)
        #expect(try await httpRequest(port: server.port, .GET, "/api1", headers: [("token", key)]).status == 200)
        #expect(try await httpRequest(port: server.port, .GET, "/api2", headers: [("token", key)]).status == 403)
        #expect(await server.stop() == 0)

        let usage = try await tollgate(["usage", id, "--store", store]).stdout
        #expect(usage.contains("  api1: 1 admitted, 0 denied"), "\(usage)")
        #expect(usage.contains("  api2: 0 admitted, 1 denied (scope_denied 1)"), "\(usage)")
        #expect(!usage.contains("/api"), "\(usage)")
        #expect(usage.contains("unlimited"))

        let list = try await tollgate(["keys", "list", "--store", store]).stdout.split(separator: "\n")
        #expect(list.first?.contains("EXPIRES") == true)
        let open = try #require(list.first { $0.hasPrefix(id) })
        #expect(open.contains("unlimited") && open.contains("never"), "\(open)")
        #expect(list.contains { $0.contains("5/day") && $0.contains("2030-01-01T00:00:00Z") }, "\(list)")
        // Columns line up: every row starts its STATUS at the same place.
        let statusColumn = list[0].distance(from: list[0].startIndex, to: try #require(list[0].range(of: "STATUS")).lowerBound)
        for row in list.dropFirst() { #expect(row.dropFirst(statusColumn).hasPrefix("active"), "\(row)") }
        #expect(try await tollgate(["keys", "show", id, "--store", store]).stdout.contains("limits:   unlimited"))
    }

    @Test func importChecksEveryLineFirstAndSkipsWhatExists() async throws {
        let digest = KeyDigest(secret: "migrated-secret").hex
        let good = """
            {"key": "imported-one", "scopes": ["api1"], "limits": ["5/day"], "name": "one"}
            {"digest": "\(digest)", "scopes": ["*"], "id": "key_migrated"}

            """
        let first = try await tollgate(["keys", "import", "-", "--store", store], stdin: good)
        #expect(first.status == 0, "\(first.stderr)")
        #expect(first.stdout.contains("Imported 2 keys"))
        let again = try await tollgate(["keys", "import", "-", "--store", store], stdin: good)
        #expect(again.stdout.contains("Imported 0 keys; skipped 2"))

        let bad = """
            {"key": "fine-one", "scopes": ["*"]}
            {"key": "bad-limit", "scopes": ["*"], "limits": ["lots"]}
            """
        let refused = try await tollgate(["keys", "import", "-", "--store", store], stdin: bad)
        #expect(refused.status != 0)
        #expect(refused.stderr.contains("line 2"))
        #expect(refused.stderr.contains("nothing was imported"))
        let list = try #require(try await tollgate(["keys", "list", "--json", "--store", store]).json() as? [[String: Any]])
        #expect(list.count == 2)
        #expect(list.contains { $0["id"] as? String == "key_migrated" })
    }

    @Test func aRunningServerTakesNewKeysAtOnceAndRevocationsWithinASecond() async throws {
        try await LoadLock.exclusively {
            let server = try await ServerProcess(arguments: ["--store", store], directory: directory)
            let (id, key) = try await createKey(["--scope", "*"])
            let first = try await httpRequest(port: server.port, .GET, "/api1", headers: [("Authorization", "Bearer \(key)")])
            #expect(first.status == 200)

            #expect(try await tollgate(["keys", "revoke", id, "--store", store]).status == 0)
            let revokedAt = ContinuousClock.now
            var status = 200
            while status == 200 && ContinuousClock.now - revokedAt < .seconds(3) {
                status = try await httpRequest(port: server.port, .GET, "/api1", headers: [("X-API-Key", key)]).status
                if status == 200 { try await Task.sleep(for: .milliseconds(25)) }
            }
            #expect(status == 401)
            #expect(ContinuousClock.now - revokedAt < .seconds(1))
            #expect(!server.stderr.contains(key), "logs never hold a secret")
            #expect(await server.stop() == 0)
        }
    }

    @Test func demoKeysGetTheirFullQuotaBackAtEveryStart() async throws {
        let server = try await ServerProcess(arguments: ["--demo", "--store", store], directory: directory)
        #expect(server.stdout.contains("Demo keys created"))
        #expect(server.stdout.contains("demo1000 1000 of 1000"))
        #expect(server.stdout.contains("curl"))
        for _ in 0..<5 { #expect(try await httpRequest(port: server.port, .GET, "/api2", headers: [("token", "demo5")]).status == 200) }
        #expect(try await httpRequest(port: server.port, .GET, "/api2", headers: [("token", "demo5")]).status == 429)
        #expect(await server.stop() == 0)
        // An operator revoked one: --demo makes it a demo key again.
        let listed = try #require(try await tollgate(["keys", "list", "--json", "--store", store]).json() as? [[String: Any]])
        let ids = Dictionary(uniqueKeysWithValues: listed.map { ($0["name"] as? String ?? "", $0["id"] as? String ?? "") })
        #expect(try await tollgate(["keys", "revoke", ids["demo key (10 total)"] ?? "", "--store", store]).status == 0)

        let again = try await ServerProcess(arguments: ["--demo", "--store", store], directory: directory)
        #expect(again.stdout.contains("Demo keys restored to their full quota"))
        #expect(again.stdout.contains("demo5    5    of 5"))
        for _ in 0..<5 { #expect(try await httpRequest(port: again.port, .GET, "/api2", headers: [("token", "demo5")]).status == 200) }
        #expect(try await httpRequest(port: again.port, .GET, "/api2", headers: [("token", "demo5")]).status == 429)
        #expect(try await httpRequest(port: again.port, .GET, "/api1", headers: [("token", "demo10")]).status == 200)
        assertNoDemoSecretInTheFile()
        await again.stop()
        assertNoDemoSecretInTheFile()
        let keys = try #require(try await tollgate(["keys", "list", "--json", "--store", store]).json() as? [[String: Any]])
        #expect(keys.count == 4)
        let names = keys.compactMap { $0["name"] as? String }
        #expect(Set(names) == ["demo key (5 total)", "demo key (10 total)", "demo key (100 total)", "demo key (1000 total)"])
        let table = try await tollgate(["keys", "list", "--store", store]).stdout
        for quota in [5, 10, 100, 1000] { #expect(!table.contains("demo\(quota)"), "keys list shows no demo secret") }
    }

    /// Neither the database nor its WAL holds a demo key's secret, as a name or otherwise.
    func assertNoDemoSecretInTheFile() {
        let path = String(store.dropFirst("sqlite:".count))
        for suffix in ["", "-wal"] {
            let bytes = (try? Data(contentsOf: URL(fileURLWithPath: path + suffix))) ?? Data()
            for quota in [5, 10, 100, 1000] {
                #expect(bytes.range(of: Data("demo\(quota)".utf8)) == nil, "demo\(quota) is in \(path + suffix)")
            }
        }
    }

    @Test func aSecondServerOnTheSameFileIsRefused() async throws {
        let server = try await ServerProcess(arguments: ["--store", store], directory: directory)
        let second = try await tollgate(["serve", "--port", "0", "--admin-port", "0", "--store", store])
        #expect(second.status != 0)
        #expect(second.stderr.contains("another 'tollgate serve'"))
        await server.stop()
    }

    /// Refusals are counted in memory and written by the server's 200 ms flush, so that
    /// `usage` from another process shows them within a second, as it does revocations.
    @Test func refusalsReachUsageWithinASecond() async throws {
        try await LoadLock.exclusively {
            let (id, key) = try await createKey(["--scope", "api1", "--limit", "1/total"])
            let server = try await ServerProcess(arguments: ["--store", store], directory: directory)
            #expect(try await httpRequest(port: server.port, .GET, "/api1", headers: [("token", key)]).status == 200)
            #expect(try await httpRequest(port: server.port, .GET, "/api1", headers: [("token", key)]).status == 429)
            #expect(try await httpRequest(port: server.port, .GET, "/api2", headers: [("token", key)]).status == 403)
            let refusedAt = ContinuousClock.now
            var denied: [String: Int] = [:]
            while ContinuousClock.now - refusedAt < .seconds(3) {
                let usage = try #require(try await tollgate(["usage", id, "--json", "--store", store]).json() as? [String: Any])
                let apis = usage["apis"] as? [String: [String: Any]] ?? [:]
                denied = apis.compactMapValues { $0["denied"] as? Int }
                if denied == ["api1": 1, "api2": 1] { break }
                try await Task.sleep(for: .milliseconds(50))
            }
            #expect(denied == ["api1": 1, "api2": 1])
            #expect(ContinuousClock.now - refusedAt < .seconds(1), "refusals reached usage only after \(ContinuousClock.now - refusedAt)")
            #expect(await server.stop() == 0)
        }
    }

    /// Every start-up failure names what failed, with a remedy that fits, and comes before
    /// anything says the server is up.
    @Test func startUpFailuresNameWhatFailedBeforeAnythingIsAnnounced() async throws {
        let holder = try await ServerProcess(arguments: ["--store", "memory:"], directory: directory)
        defer { _ = holder }
        let junk = directory.appendingPathComponent("notes.txt")
        try Data("not a database, just notes\n".utf8).write(to: junk)
        let cases: [(arguments: [String], expected: [String], unexpected: [String])] = [
            (
                ["--store", "sqlite:" + junk.path], ["not a database", "notes.txt"],
                ["writable"]
            ),
            (
                ["--store", "memory:", "--port", "0", "--admin-port", "\(holder.adminPort)"],
                ["control plane", "127.0.0.1:\(holder.adminPort)", "in use", "--admin-port"], ["errno"]
            ),
            (
                ["--store", "memory:", "--port", "\(holder.port)", "--admin-port", "0"],
                ["data plane", "127.0.0.1:\(holder.port)", "in use", "--port"], ["errno", "))"]
            ),
            (
                ["--store", "memory:", "--host", "no-such-host.invalid", "--port", "0", "--admin-port", "0"],
                ["data plane", "no-such-host.invalid", "--host"], ["stop what is using it"]
            ),
            (
                ["--store", "memory:", "--admin-host", "no-such-host.invalid", "--port", "0", "--admin-port", "0"],
                ["control plane", "no-such-host.invalid", "--admin-host"], ["stop what is using it"]
            ),
        ]
        for (arguments, expected, unexpected) in cases {
            let result = try await tollgate(["serve"] + arguments)
            #expect(result.status == 1, "\(arguments)")
            #expect(result.stdout.isEmpty, "nothing is announced: \(result.stdout)")
            let line = result.stderr.split(separator: "\n").last.map(String.init) ?? ""
            #expect(line.hasPrefix("tollgate: "), "\(result.stderr)")
            for text in expected { #expect(line.contains(text), "\(line) should say \(text)") }
            for text in unexpected { #expect(!line.contains(text), "\(line) should not say \(text)") }
        }
        #expect(await holder.stop() == 0)
    }

    /// SIGTERM drains: every `200` a client saw is counted, and the process exits 0.
    @Test func gracefulShutdownCountsEveryAnswer() async throws {
        try await LoadLock.exclusively {
            let (id, key) = try await createKey(["--scope", "*", "--limit", "1000000/total"])
            let server = try await ServerProcess(arguments: ["--store", store], directory: directory)
            let ok = try await load(port: server.port, key: key, clients: 8, requests: 50)
            #expect(await server.stop(signal: SIGTERM) == 0)
            #expect(try await used(id) == ok)
        }
    }

    /// `kill -9` at any moment loses no admitted use: used >= the `200`s clients received.
    @Test func killMinusNineLosesNoAdmittedUse() async throws {
        try await LoadLock.exclusively {
            let (id, key) = try await createKey(["--scope", "*", "--limit", "1000000/total"])
            let server = try await ServerProcess(arguments: ["--store", store], directory: directory)
            let port = server.port
            let received = Counter()
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<16 {
                    group.addTask {
                        try? await TestHTTPConnection.with(port: port) { connection in
                            while true {
                                if try await connection.send(.GET, "/api1", headers: [("token", key)]).status == 200 {
                                    received.value.add(1, ordering: .relaxed)
                                }
                            }
                        }
                    }
                }
                // Kill mid-load: once the load is well under way, whatever the machine's pace.
                let deadline = ContinuousClock.now + .seconds(20)
                while received.value.load(ordering: .relaxed) < 500 && ContinuousClock.now < deadline {
                    try await Task.sleep(for: .milliseconds(10))
                }
                await server.stop(signal: SIGKILL)
                try await group.waitForAll()
            }
            let answered = received.value.load(ordering: .relaxed)
            #expect(answered >= 500)
            let persisted = try await used(id)
            #expect(persisted >= answered, "used \(persisted) < \(answered) answered 200")
            // A restarted server carries on from what was persisted.
            let restarted = try await ServerProcess(arguments: ["--store", store], directory: directory)
            #expect(try await httpRequest(port: restarted.port, .GET, "/api1", headers: [("token", key)]).status == 200)
            await restarted.stop()
            #expect(try await used(id) == persisted + 1)
        }
    }

    var databasePath: String { cli.databasePath }

    func keyCount() async throws -> Int { try await cli.keyCount() }

    func used(_ id: String) async throws -> Int {
        let usage = try #require(try await tollgate(["usage", id, "--json", "--store", store]).json() as? [String: Any])
        let limits = try #require(usage["limits"] as? [[String: Any]])
        return try #require(limits.first?["used"] as? Int)
    }

    func load(port: Int, key: String, clients: Int, requests: Int) async throws -> Int {
        try await withThrowingTaskGroup(of: Int.self) { group in
            for _ in 0..<clients {
                group.addTask {
                    try await TestHTTPConnection.with(port: port) { connection in
                        var ok = 0
                        for _ in 0..<requests where try await connection.send(.GET, "/api1", headers: [("token", key)]).status == 200 {
                            ok += 1
                        }
                        return ok
                    }
                }
            }
            return try await group.reduce(0, +)
        }
    }
}

/// A count that many client tasks bump.
final class Counter: Sendable {
    let value = Atomic<Int>(0)
}
