import GRDB
import Testing
import TollgateCore
import TollgateSQLite
import TollgateTestSupport

extension SQLiteStoreTests {
    /// Refusals are counted in memory and written by a periodic flush of their own: a change
    /// feed that cannot read the file (here a column it reads renamed away, as in a damaged
    /// or foreign file) must not keep them out of it.
    @Test func refusalsReachTheFileWhileTheChangeFeedCannotRead() async throws {
        let path = try path()
        var configuration = SQLiteKeyStore.Configuration(path: path)
        configuration.changePollInterval = .milliseconds(50)
        let server = try SQLiteKeyStore(configuration: configuration, logger: quietLogger)
        let cli = try SQLiteKeyStore(configuration: .init(path: path), logger: quietLogger)
        let key = try await makeKey(in: server, scopes: ["api1"], secret: "k").key
        // The key is held now; its refusals need nothing more from the keys table.
        #expect(try await admit(server, secret: "k", path: "api2").outcome == .scopeDenied)
        try await DatabaseQueue(path: path).write { db in
            try db.execute(sql: "ALTER TABLE keys RENAME COLUMN previous_until TO previous_until_gone")
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await server.run() }
            for _ in 0..<3 { #expect(try await admit(server, secret: "k", path: "api2").outcome == .scopeDenied) }
            let deadline = ContinuousClock.now + .seconds(3)
            var written = try await cli.usage(id: key.id)?.apis["api2"]?.scopeDenied ?? 0
            while written < 4 && ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(20))
                written = try await cli.usage(id: key.id)?.apis["api2"]?.scopeDenied ?? 0
            }
            #expect(written == 4, "the refusals are in the file within a few polls, though every feed read fails")
            group.cancelAll()
        }
    }
}
