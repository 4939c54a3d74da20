import Foundation
import Testing
import TollgateCore
import TollgateSQLite
import TollgateTestSupport

/// `usagePage`, which exports read a page at a time, reports what `listKeys` and
/// `usage(id:)` report, on every store, including SQLite's one-read override.
@Suite struct UsagePageTests {
    static func expected(_ store: some KeyStore, after: KeyID?, limit: Int) async throws -> [KeyUsage] {
        var result: [KeyUsage] = []
        for key in try await store.listKeys(after: after, limit: limit) {
            result.append(KeyUsage(key: key, usage: try await store.usage(id: key.id)))
        }
        return result
    }

    static func check(_ store: some KeyStore) async throws {
        var after: KeyID? = nil
        var seen = 0
        while true {
            let page = try await store.usagePage(after: after, limit: 4)
            let expected = try await Self.expected(store, after: after, limit: 4)
            #expect(page.map(\.key) == expected.map(\.key))
            for (got, want) in zip(page, expected) {
                #expect(
                    (got.usage?.counters ?? [:]).filter { $0.value.used > 0 } == (want.usage?.counters ?? [:]).filter { $0.value.used > 0 })
                #expect(got.usage?.apis ?? [:] == want.usage?.apis ?? [:])
            }
            seen += page.count
            guard page.count == 4 else { break }
            after = page.last?.key.id
        }
        #expect(seen == 10)
    }

    @Test(arguments: StoreKind.allCases)
    func pagesMatchKeyByKeyReads(kind: StoreKind) async throws {
        let store = try await kind.make()
        for index in 0..<10 {
            let secret = "page-key-\(index)"
            try await makeKey(in: store, scopes: ["api1"], limits: ["api1:3/day", "100/total"], secret: secret)
            for path in Array(repeating: "api1", count: index % 5) + ["api2"] { _ = try await admit(store, secret: secret, path: path) }
        }
        try await Self.check(store)
    }

    /// A store that holds none of the keys reads every count from the file.
    @Test func sqlitePagesReadTheFileWhenNothingIsHeld() async throws {
        let path = try TestPaths.temporaryDirectory().appendingPathComponent("store.sqlite").path
        let store = try SQLiteKeyStore(configuration: .init(path: path))
        for index in 0..<10 {
            let secret = "page-key-\(index)"
            try await makeKey(in: store, scopes: ["api1"], limits: ["api1:3/day", "100/total"], secret: secret)
            for path in Array(repeating: "api1", count: index % 5) + ["api2"] { _ = try await admit(store, secret: secret, path: path) }
        }
        store.flushNow()
        let cold = try SQLiteKeyStore(configuration: .init(path: path))
        let page = try await cold.usagePage(after: nil, limit: 100)
        #expect(page.count == 10)
        #expect(page.contains { ($0.usage?.apis["api1"]?.admitted ?? 0) == 3 })
        #expect(page.allSatisfy { $0.usage?.apis["api2"]?.scopeDenied == 1 })
        try await Self.check(cold)
    }
}
