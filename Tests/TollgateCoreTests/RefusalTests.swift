import Testing
import TollgateCore

/// The refusals every store makes before scope and quota, from one function
/// (``APIKey/refusal(presenting:at:)``): revoked ahead of expired, and a secret that no
/// longer opens the key refused as revoked.
@Suite struct RefusalTests {
    static let start = Timestamp(secondsSinceEpoch: 1_796_000_000)

    enum Case: String, CaseIterable, CustomTestStringConvertible {
        case current, expired, revoked, revokedAndExpired, previousInOverlap, previousAfterOverlap, previousButExpired, stale

        var testDescription: String { rawValue }
    }

    @Test(
        arguments: [
            (Case.current, nil),
            (.expired, .keyExpired),
            (.revoked, .keyRevoked),
            (.revokedAndExpired, .keyRevoked),
            (.previousInOverlap, nil),
            (.previousAfterOverlap, .keyRevoked),
            (.previousButExpired, .keyExpired),
            (.stale, .keyRevoked),
        ] as [(Case, AdmissionDecision.Outcome?)])
    func refusal(of presented: Case, is expected: AdmissionDecision.Outcome?) throws {
        let now = Self.start.adding(seconds: 60)
        var key = try KeyIssuer.issue(KeyDraft(scopes: [.all]), secret: "old", now: Self.start).key
        key = key.rotated(to: KeyDigest(secret: "new"), previousUntil: now.adding(seconds: presented == .previousAfterOverlap ? 0 : 1))
        if [.expired, .revokedAndExpired, .previousButExpired].contains(presented) { key.expiresAt = now }
        if [.revoked, .revokedAndExpired].contains(presented) { key.revokedAt = Self.start }
        let secret =
            switch presented {
            case .previousInOverlap, .previousAfterOverlap, .previousButExpired: "old"
            case .stale: "some other secret"
            default: "new"
            }
        #expect(key.refusal(presenting: KeyDigest(secret: secret), at: now) == expected)
    }
}
