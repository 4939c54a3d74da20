import Testing
import TollgateCore

/// What every way of making a key (CLI, admin API, import) refuses alike.
@Suite struct KeyIssuerTests {
    let now = Timestamp(secondsSinceEpoch: 1_800_000_000)

    func validate(name: String = "", scopes: [String] = ["*"], limits: [String] = []) throws {
        let draft = KeyDraft(
            name: name, scopes: try scopes.map { try ScopePattern(parsing: $0) }, limits: try limits.map { try LimitSpec(parsing: $0) })
        try KeyIssuer.validate(draft, now: now)
    }

    /// Characters that make a name in a listing read as another name, or as two lines.
    @Test(arguments: [
        ("paypal\u{202E}lanif", "U+202E"),
        ("zero\u{200B}width", "U+200B"),
        ("joiner\u{200D}", "U+200D"),
        ("\u{FEFF}bom", "U+FEFF"),
        ("two\u{2028}lines", "U+2028"),
        ("two\u{2029}paragraphs", "U+2029"),
        ("isolate\u{2066}x", "U+2066"),
    ])
    func namesRefuseInvisibleAndSeparatingCharacters(name: String, shown: String) {
        #expect {
            try validate(name: name)
        } throws: { error in
            let error = error as! TollgateError
            return error.code == .invalidInput && error.message.contains(shown)
        }
    }

    @Test(arguments: ["café", "東京の鍵", "naïve — dash", "plain ascii"])
    func visibleTextIsAName(name: String) throws {
        try validate(name: name)
    }

    @Test func scopesAndPatternsAreCapped() throws {
        try validate(scopes: (0..<KeyIssuer.maximumScopes).map { "api\($0)" })
        #expect(throws: TollgateError.self) { try validate(scopes: (0...KeyIssuer.maximumScopes).map { "api\($0)" }) }

        let longest = String(repeating: "a", count: KeyIssuer.maximumPatternLength)
        try validate(scopes: [longest], limits: ["\(longest):1/day"])
        #expect {
            try validate(scopes: [longest + "b"])
        } throws: { error in
            (error as? TollgateError)?.code == .invalidScope
        }
        #expect {
            try validate(limits: ["\(longest)b:1/day"])
        } throws: { error in
            (error as? TollgateError)?.code == .invalidLimit
        }
    }
}
