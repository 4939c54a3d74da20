import Testing
import TollgateCore

@Suite struct KeyIDTests {
    @Test(arguments: ["key_AbC123", "a", "9", "partner-1.v2_x", String(repeating: "k", count: 64)])
    func acceptsTheGrammar(text: String) throws {
        #expect(try KeyID(validating: text).rawValue == text)
    }

    @Test func generatedIDsFollowTheGrammar() throws {
        for _ in 0..<100 { _ = try KeyID(validating: KeyID.generate().rawValue) }
    }

    @Test(arguments: [
        "", " ", "key 1", "_key", "-key", ".key", "key/1", "key\n", "key\u{0}", "key\u{1b}[31m", "ключ", "key:1", "key'1",
        String(repeating: "k", count: 65),
    ])
    func refusesAnythingElseInOneLine(text: String) {
        #expect {
            try KeyID(validating: text)
        } throws: { error in
            let message = (error as! TollgateError).message
            return message.contains("1 to 64") && !message.contains("\n") && !message.contains("\u{0}") && !message.contains("\u{1b}")
        }
    }

    /// A huge id is refused without being echoed back whole.
    @Test func aHugeIDIsQuotedShort() {
        let huge = String(repeating: "x", count: 1_000_000)
        #expect {
            try KeyID(validating: huge)
        } throws: { error in
            let message = (error as! TollgateError).message
            return message.utf8.count < 400 && message.contains("1000000 bytes")
        }
    }

    @Test func issuingChecksTheID() {
        #expect(throws: TollgateError.self) {
            try KeyIssuer.issue(KeyDraft(scopes: [.all]), id: KeyID(rawValue: ""), now: Timestamp(secondsSinceEpoch: 0))
        }
    }

    /// Names are printed as they are, so they hold no control characters; any other text is fine.
    @Test(arguments: ["tab\there", "line\nbreak", "esc\u{1b}[2J", "del\u{7f}", "c1\u{85}"])
    func refusesNamesWithControlCharacters(name: String) {
        #expect(throws: TollgateError.self) {
            try KeyIssuer.issue(KeyDraft(name: name, scopes: [.all]), now: Timestamp(secondsSinceEpoch: 0))
        }
    }

    @Test func acceptsPrintableNames() throws {
        _ = try KeyIssuer.issue(KeyDraft(name: "Partner GmbH – Zürich (5 total)", scopes: [.all]), now: Timestamp(secondsSinceEpoch: 0))
    }
}
