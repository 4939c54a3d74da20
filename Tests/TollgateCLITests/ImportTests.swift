import Foundation
import Testing
import TollgateCore
import TollgateTestSupport

/// `keys import` of a file large enough to span many chunks and batches (20 000 lines):
/// a repeat stores nothing and says so, and one bad line, even the last, stores nothing.
/// On SQLite and on Redis, each a real store.
@Suite struct ImportTests {
    static let lines = 20_000

    /// Lines as users write them: secrets and digests, own ids and none, names, limits,
    /// expiries, a blank line; `seed` keeps two files apart.
    static func file(seed: String, badLastLine: Bool = false) -> String {
        var text = ""
        for n in 1...lines {
            if n == lines && badLastLine {
                text += "{\"key\": \"\(seed)-last\", \"scopes\": [\"api1\"], \"limits\": [\"lots\"]}\n"
                continue
            }
            let secret = "\(seed)-secret-\(n)"
            var fields: [String] = []
            if n % 2 == 0 { fields.append("\"id\": \"\(seed)-\(n)\"") }
            fields.append(
                n % 4 == 0 ? "\"digest\": \"\(KeyDigest(secret: secret).hex)\"" : "\"key\": \"\(secret)\"")
            fields.append("\"name\": \"customer \(n)\", \"scopes\": [\"api1\", \"api2*\"], \"limits\": [\"\(n)/day\", \"10/second\"]")
            if n % 8 == 0 { fields.append("\"expires_at\": \"2099-01-01T00:00:00Z\"") }
            text += "{" + fields.joined(separator: ", ") + "}\n"
            if n == lines / 2 { text += "\n" }
        }
        return text
    }

    func importTwiceThenRefuseABadLastLine(store: String) async throws {
        let good = Self.file(seed: "a")
        let first = try await tollgate(["keys", "import", "-", "--store", store], stdin: good)
        #expect(first.status == 0, "\(first.stderr.prefix(500))")
        #expect(first.stdout.contains("Imported 20000 keys; skipped 0"), "\(first.stdout)")
        let again = try await tollgate(["keys", "import", "-", "--store", store], stdin: good)
        #expect(again.status == 0, "\(again.stderr.prefix(500))")
        #expect(again.stdout.contains("Imported 0 keys; skipped 20000"), "\(again.stdout)")

        // The bad line is the file's last (line 20 001: one blank line is in the middle),
        // so it is found only after every other key was read: still, nothing is stored.
        let bad = Self.file(seed: "b", badLastLine: true)
        let refused = try await tollgate(["keys", "import", "-", "--store", store], stdin: bad)
        #expect(refused.status == 1)
        #expect(refused.stderr.contains("standard input line 20001: "), "\(refused.stderr.prefix(500))")
        #expect(refused.stderr.contains("nothing was imported"))
        #expect(refused.stderr.split(separator: "\n").count == 1)
        // Proof that none of its 19 999 good keys were stored: without the bad line, all are new.
        let rest = String(bad.split(separator: "\n", omittingEmptySubsequences: false).dropLast(2).joined(separator: "\n"))
        let stored = try await tollgate(["keys", "import", "-", "--store", store], stdin: rest)
        #expect(stored.stdout.contains("Imported 19999 keys; skipped 0"), "\(stored.stdout) \(stored.stderr.prefix(500))")

        // The keys are what the file says.
        let shown = try #require(try await tollgate(["keys", "show", "a-8", "--json", "--store", store]).json() as? [String: Any])
        #expect(shown["name"] as? String == "customer 8")
        #expect(shown["limits"] as? [String] == ["8/day", "10/second"])
        #expect(shown["expires_at"] as? String == "2099-01-01T00:00:00Z")
    }

    @Test func sqliteImportsTwiceAndRefusesABadLastLine() async throws {
        let directory = try TestPaths.temporaryDirectory()
        try await importTwiceThenRefuseABadLastLine(store: "sqlite:" + directory.appendingPathComponent("import.sqlite").path)
    }

    @Test(.enabled(if: RedisServer.isAvailable, "redis-server is not installed"))
    func redisImportsTwiceAndRefusesABadLastLine() async throws {
        let redis = try await RedisServer()
        try await importTwiceThenRefuseABadLastLine(store: redis.url)
        redis.stop()
    }
}
