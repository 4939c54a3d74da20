import Testing
import TollgateCore

@Suite struct KeySecretTests {
    @Test func generatedSecretsCarryThePrefixAndPassTheirChecksum() {
        var seen = Set<String>()
        for _ in 0..<1000 {
            let secret = KeySecret.generate()
            #expect(secret.hasPrefix("tg_"))
            #expect(secret.utf8.count == KeySecret.length)
            #expect(KeySecret.isPlausible(secret))
            seen.insert(secret)
        }
        #expect(seen.count == 1000)
    }

    @Test func anyChangedCharacterFailsTheChecksum() {
        let secret = Array(KeySecret.generate())
        for index in 3..<secret.count {
            var mistyped = secret
            mistyped[index] = mistyped[index] == "x" ? "y" : "x"
            #expect(!KeySecret.isPlausible(String(mistyped)), "changed at \(index)")
        }
        #expect(!KeySecret.isPlausible(String(secret.dropLast())))
        #expect(!KeySecret.isPlausible(String(secret) + "a"))
    }

    @Test func operatorSecretsWithoutThePrefixNeedNoChecksum() {
        #expect(KeySecret.isPlausible("demo5"))
        #expect(!KeySecret.isPlausible(""))
    }

    @Test func issuingRefusesBadOperatorSecrets() {
        let draft = KeyDraft(scopes: [.all])
        let now = Timestamp(secondsSinceEpoch: 0)
        for bad in ["", "has space", "tg_forged", String(repeating: "a", count: 513), "comma,key", "tab\tkey"] {
            #expect(throws: TollgateError.self) { try KeyIssuer.issue(draft, secret: bad, now: now) }
        }
        #expect(throws: Never.self) { try KeyIssuer.issue(draft, secret: "demo5", now: now) }
    }

    @Test func digestsAreSHA256AndRoundTripThroughHex() throws {
        // SHA-256("abc"), from FIPS 180-2.
        let digest = KeyDigest(secret: "abc")
        #expect(digest.hex == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(KeyDigest(hex: digest.hex) == digest)
        #expect(KeyDigest(bytes: digest.bytes) == digest)
        #expect(digest.withUnsafeBytes { Array($0) } == digest.bytes)
        #expect(KeyDigest(hex: "zz") == nil)
    }
}
