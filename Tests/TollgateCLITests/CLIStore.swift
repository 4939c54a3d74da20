import Foundation
import Testing
import TollgateTestSupport

/// A new SQLite store for one test of the CLI: its folder and its `--store` value.
struct CLIStore {
    let directory: URL
    let store: String

    init() throws {
        directory = try TestPaths.temporaryDirectory()
        store = "sqlite:" + directory.appendingPathComponent("cli.sqlite").path
    }

    /// The database file's path.
    var databasePath: String { String(store.dropFirst("sqlite:".count)) }

    /// How many keys the store holds; 0 when there is no database yet.
    func keyCount() async throws -> Int {
        guard FileManager.default.fileExists(atPath: databasePath) else { return 0 }
        let list = try await tollgate(["keys", "list", "--json", "--store", store])
        return try #require(try list.json() as? [[String: Any]]).count
    }

    /// `tollgate keys create --json` on the store; the new key's id and secret.
    func createKey(_ extra: [String]) async throws -> (id: String, key: String) {
        let result = try await tollgate(["keys", "create", "--json", "--store", store] + extra)
        #expect(result.status == 0, "\(result.stderr)")
        let object = try #require(try result.json() as? [String: Any])
        return (try #require(object["id"] as? String), try #require(object["key"] as? String))
    }
}
