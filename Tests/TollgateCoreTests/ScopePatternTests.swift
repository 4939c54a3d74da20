import Testing
import TollgateCore

@Suite struct ScopePatternTests {
    /// The old service's scope table: each pattern against the root, the three APIs, a path
    /// below an API, a longer name and an unknown path.
    static let table: [(pattern: String, matches: [String])] = [
        ("*", ["", "api1", "api2", "api3", "api1/x", "api10", "unknown", "api", "api/x"]),
        ("", [""]),
        ("/", [""]),
        ("api1", ["api1"]),
        ("/api1", ["api1"]),
        ("api1*", ["api1", "api1/x", "api10"]),
        ("api1/", ["api1/x"]),
        ("api*", ["api1", "api2", "api3", "api1/x", "api10", "api", "api/x"]),
        ("api/", ["api/x"]),
        ("unknown", ["unknown"]),
    ]
    static let paths = ["", "api1", "api2", "api3", "api1/x", "api10", "unknown", "api", "api/x"]

    @Test(arguments: table)
    func matchesExactlyTheTablesPaths(row: (pattern: String, matches: [String])) throws {
        let pattern = try ScopePattern(parsing: row.pattern)
        for path in Self.paths {
            #expect(pattern.matches(Substring(path)) == row.matches.contains(path), "pattern '\(row.pattern)' on '/\(path)'")
        }
    }

    @Test(arguments: ["*", "/", "api1", "api1*", "api1/", "a/b", "a/b/"])
    func printsWhatItParses(text: String) throws {
        let pattern = try ScopePattern(parsing: text)
        #expect(try ScopePattern(parsing: pattern.description) == pattern)
        #expect(pattern.description == text)
    }

    @Test(arguments: ["a*b", "**", "a b", "a%2f", "a?x", "a//b", "../api1", "api1/./x", "a\"b", "a\\b"])
    func refusesPatternsNoPathCanMatch(text: String) {
        #expect(throws: TollgateError.self) { try ScopePattern(parsing: text) }
    }

    @Test func aKeyWithNoPatternsReachesNothing() {
        let key = APIKey(id: KeyID(rawValue: "k"), digest: KeyDigest(secret: "s"), scopes: [], createdAt: Timestamp(secondsSinceEpoch: 0))
        for path in Self.paths { #expect(!key.reaches(Substring(path))) }
    }
}
