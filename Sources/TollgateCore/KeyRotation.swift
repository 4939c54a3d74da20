/// How long a rotated-away secret keeps working, as `keys rotate --overlap` and the admin
/// API's `{"overlap": …}` write it: a span such as `24h`, `30m`, `7d` or `0s`.
public enum RotationOverlap {
    /// The overlap when none is given: a day, time enough to roll a new secret out.
    public static let defaultText = "24h"
    /// The longest overlap: a leaked secret must not stay valid for years.
    public static let maximumSeconds: Int64 = 365 * 86_400

    /// The overlap in seconds.
    public static func parse(_ text: String) throws(TollgateError) -> Int64 {
        let bad = TollgateError(
            .invalidInput,
            "\(TollgateError.quote(text)) is not an overlap: write a span such as '24h', '30m', '7d' or '0s' (at most 365d)")
        guard let unit = text.last, let count = Int64(text.dropLast()), count >= 0, text.first?.isNumber == true else { throw bad }
        let scale: Int64
        switch unit {
        case "s": scale = 1
        case "m": scale = 60
        case "h": scale = 3600
        case "d": scale = 86_400
        case "w": scale = 604_800
        default: throw bad
        }
        let (seconds, overflow) = count.multipliedReportingOverflow(by: scale)
        guard !overflow, seconds <= maximumSeconds else { throw bad }
        return seconds
    }
}

/// A key just rotated, with its new secret.
public struct RotatedKey: Sendable {
    public var key: APIKey
    /// The new secret, shown this once.
    public var secret: String
}

extension KeyStore {
    /// Rotates a key to a newly generated secret, the current one kept for `overlapSeconds`.
    /// - Returns: the rotated record and its new secret, or `nil` if no key has that id.
    /// - Throws: `.invalidInput` for a revoked key: a new secret for it would be refused too.
    public func rotate(id: KeyID, overlapSeconds: Int64, now: Timestamp) async throws(TollgateError) -> RotatedKey? {
        guard let current = try await key(id: id) else { return nil }
        if current.revokedAt != nil {
            throw TollgateError(.invalidInput, "the key \(id) is revoked: create a new key instead ('tollgate keys create')")
        }
        let secret = KeySecret.generate()
        let until = now.adding(seconds: overlapSeconds)
        guard let key = try await rotateKey(id: id, to: KeyDigest(secret: secret), previousUntil: until) else { return nil }
        return RotatedKey(key: key, secret: secret)
    }
}
