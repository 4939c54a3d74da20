import Foundation
import Testing
import TollgateCore

/// Generated ids are stored packed (see `KeyID`); every id must read back, compare, hash
/// and encode exactly as its text does.
@Suite struct KeyIDPackingTests {
    @Test(arguments: [
        "key_0000000000000000", "key_zzzzzzzzzzzzzzzz", "key_AbCdEfGh01234567", "key_000000000000000z",
        // Near the generated shape but not it: kept as given.
        "key_000000000000000", "key_00000000000000000", "key_00000000000000-0", "Key_0000000000000000", "key-0000000000000000",
        // Given ids that start with the bytes packing uses as markers.
        "\u{01}\u{01}\u{01}\u{01}\u{01}\u{01}\u{01}\u{01}\u{01}\u{01}\u{01}\u{01}\u{01}\u{01}\u{01}", "\u{01}", "\u{02}", "\u{02}x",
        "", "a", String(repeating: "k", count: 64),
    ])
    func readsBackAsGiven(text: String) throws {
        let id = KeyID(rawValue: text)
        #expect(id.rawValue == text)
        #expect(id.description == text)
        #expect(id == KeyID(rawValue: String(decoding: Array(text.utf8), as: UTF8.self)))
        let decoded = try JSONDecoder().decode([KeyID].self, from: JSONEncoder().encode([id]))
        #expect(decoded == [id] && decoded[0].rawValue == text)
    }

    /// A given id that looks like a packed one must never equal the id it would unpack to.
    @Test func aGivenIDNeverAliasesAGeneratedOne() {
        let generated = KeyID(rawValue: "key_0000000000000000")
        let lookalike = KeyID(rawValue: "\u{01}" + String(repeating: "\u{0}", count: 14))
        #expect(generated != lookalike)
        #expect(lookalike.rawValue != generated.rawValue)
        // Checking an id skips reading a packed one back: a lookalike is still checked.
        #expect(throws: Never.self) { try generated.validate() }
        #expect(throws: TollgateError.self) { try lookalike.validate() }
        #expect(throws: TollgateError.self) { try KeyID(rawValue: "key_00000000000000-0 ").validate() }
    }

    @Test func sortsAndHashesAsItsText() {
        var generator = SplitMix(seed: 11)
        var ids = (0..<2000).map { _ in KeyID.generate(using: &generator) }
        ids += ["key_0000000000000000", "key_zzzzzzzzzzzzzzzz", "key_", "key_a", "a", "zzz", "key_0000000000000000x"].map(
            KeyID.init(rawValue:))
        for id in ids {
            #expect(KeyID(rawValue: id.rawValue) == id)
            #expect(KeyID(rawValue: id.rawValue).hashValue == id.hashValue)
        }
        #expect(ids.sorted().map(\.rawValue) == ids.map(\.rawValue).sorted())
        #expect(Set(ids).count == Set(ids.map(\.rawValue)).count)
    }
}
