import Testing
import TollgateRESP

/// A script is named by the SHA-1 of its source in lowercase hex, as Redis names it: the
/// name sent with `EVALSHA` must be the one Redis computed, or every call costs a
/// `NOSCRIPT` round trip.
@Suite struct RESPScriptTests {
    @Test(arguments: [
        // What Redis returns for SCRIPT LOAD "return 1".
        ("return 1", "e0e1f9fabfc9d4800c877a703b823ac0578ff8db"),
        // Bytes below 0x10 keep their leading zero.
        ("", "da39a3ee5e6b4b0d3255bfef95601890afd80709"),
        ("The quick brown fox jumps over the lazy dog", "2fd4e1c67a2d28fced849ee1bb76e7391b93eb12"),
    ])
    func aScriptIsNamedAsRedisNamesIt(_ source: String, _ sha1: String) {
        #expect(RESPScript(source).sha1 == sha1)
    }
}
