import Testing
import TollgateCore

@Suite struct ScopePatternTests {
    /// The contract's scope table (section 1), the old service's own rows: each pattern
    /// against the root, the three APIs, paths below an API, longer names that merely start
    /// with a pattern's text, and unknown paths. "Below" is below a `/`, never a text prefix.
    static let table: [(pattern: String, matches: [String])] = [
        ("*", paths),
        ("/*", paths),
        ("", [""]),
        ("/", [""]),
        ("api1", ["api1"]),
        ("/api1", ["api1"]),
        ("api1*", ["api1", "api1/x", "api1/x/y"]),
        ("/api1*", ["api1", "api1/x", "api1/x/y"]),
        ("api1/", ["api1/x", "api1/x/y"]),
        ("api*", ["api", "api/x"]),
        ("ap*", ["ap"]),
        ("a*", ["a"]),
        ("api/", ["api/x"]),
        ("api1/x", ["api1/x"]),
        ("api1/x*", ["api1/x", "api1/x/y"]),
        ("api1/x/", ["api1/x/y"]),
        ("api10", ["api10"]),
        ("unknown", ["unknown"]),
        ("API1", []),
    ]
    static let paths = [
        "", "a", "ap", "api", "api/x", "api1", "api2", "api3", "api1/x", "api1/x/y", "api10", "api10/x", "api1x", "unknown",
    ]

    @Test(arguments: table)
    func matchesExactlyTheTablesPaths(row: (pattern: String, matches: [String])) throws {
        let pattern = try ScopePattern(parsing: row.pattern)
        for path in Self.paths {
            #expect(pattern.matches(Substring(path)) == row.matches.contains(path), "pattern '\(row.pattern)' on '/\(path)'")
        }
    }

    /// The contract's explicit "never a text prefix" rows, spelled out on their own.
    @Test func aTrailingStarNeverReachesALongerName() throws {
        #expect(try !ScopePattern(parsing: "api1*").matches("api10"))
        #expect(try !ScopePattern(parsing: "api*").matches("api1"))
        for api in ["api1", "api2", "api3"] {
            #expect(try !ScopePattern(parsing: "ap*").matches(Substring(api)))
            #expect(try !ScopePattern(parsing: "a*").matches(Substring(api)))
        }
    }

    @Test(arguments: ["*", "/", "api1", "api1*", "api1/", "a/b", "a/b/", "a/b*"])
    func printsWhatItParses(text: String) throws {
        let pattern = try ScopePattern(parsing: text)
        #expect(try ScopePattern(parsing: pattern.description) == pattern)
        #expect(pattern.description == text)
    }

    @Test(arguments: [
        "a*b", "**", "a b", "a%2f", "a?x", "a//b", "//", "a\"b", "a\\b", "a\u{7}b", "é",
        // Dot segments, in any position: no normalized path holds one.
        "..", ".", "/..", "./", "../", "../api1", "api1/..", "api1/.", "api1/./x", "api1/../api2", "api1/../", "..*", "api1/..*",
    ])
    func refusesPatternsNoPathCanMatch(text: String) {
        #expect(throws: TollgateError.self) { try ScopePattern(parsing: text) }
    }

    /// `api1/*` could mean `api1/` or `api1*`: refused with both, rather than guessed at.
    @Test(arguments: ["api1/*", "/api1/*", "a/b/*"])
    func refusesASlashStarAndNamesBothReadings(text: String) {
        #expect {
            try ScopePattern(parsing: text)
        } throws: { error in
            let message = (error as! TollgateError).message
            return message.contains("'api1/'") && message.contains("'api1*'") || message.contains("'a/b/'") && message.contains("'a/b*'")
        }
    }

    @Test func aKeyWithNoPatternsReachesNothing() {
        let key = APIKey(id: KeyID(rawValue: "k"), digest: KeyDigest(secret: "s"), scopes: [], createdAt: Timestamp(secondsSinceEpoch: 0))
        for path in Self.paths { #expect(!key.reaches(Substring(path))) }
    }

    /// Two patterns overlap exactly when some path matches both: checked against every pair
    /// of the table's patterns over paths that exercise each boundary.
    @Test func overlapIsSomePathMatchingBoth() throws {
        let patterns = try Self.table.map { try ScopePattern(parsing: $0.pattern) }
        let probes = Self.paths + ["api/x/y", "api1/y", "api10/x/y", "unknown/x", "ap/x", "a/x", "API1", "API1/x"]
        for first in patterns {
            for second in patterns {
                let witnessed = probes.contains { first.matches(Substring($0)) && second.matches(Substring($0)) }
                #expect(first.overlaps(second) == witnessed, "'\(first)' and '\(second)'")
            }
        }
    }
}
