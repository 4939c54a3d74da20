/// A key's stored record: what it may reach and how much, never its secret.
public struct APIKey: Sendable, Hashable {
    public var id: KeyID
    public var digest: KeyDigest
    public var name: String
    /// The paths the key reaches; empty reaches nothing.
    public var scopes: [ScopePattern]
    /// Quotas a request must all fit; empty means unmetered.
    public var limits: [LimitSpec]
    public var createdAt: Timestamp
    public var expiresAt: Timestamp? {
        get { Self.timestamp(expiresAtMilliseconds) }
        set { expiresAtMilliseconds = Self.milliseconds(newValue) }
    }
    public var revokedAt: Timestamp? {
        get { Self.timestamp(revokedAtMilliseconds) }
        set { revokedAtMilliseconds = Self.milliseconds(newValue) }
    }
    /// After a rotation: the previous secret's digest, which still opens the key until
    /// `previousDigestExpiresAt` and is refused as revoked after it. Kept until the next
    /// rotation, so that the old secret keeps answering `key_revoked`, not `invalid_api_key`.
    public var previousDigest: KeyDigest? {
        get { rotation?.digest }
        set { rotation = Rotation.make(digest: newValue, until: previousDigestExpiresAt) }
    }
    public var previousDigestExpiresAt: Timestamp? {
        get { rotation?.until }
        set { rotation = Rotation.make(digest: previousDigest, until: newValue) }
    }

    // A server may hold a million records, so the optional times are stored without
    // `Optional`'s padding (an `Int64` each, `Int64.min` for none: 16 bytes less) and the
    // rotation, which most keys never have, out of line (one reference for 56 bytes).
    private var expiresAtMilliseconds: Int64
    private var revokedAtMilliseconds: Int64
    private var rotation: Rotation?

    /// What a rotation leaves on the record; immutable, so that copies of a record share it.
    private final class Rotation: Sendable, Hashable {
        let digest: KeyDigest?
        let until: Timestamp?

        private init(digest: KeyDigest?, until: Timestamp?) {
            self.digest = digest
            self.until = until
        }

        static func make(digest: KeyDigest?, until: Timestamp?) -> Rotation? {
            digest == nil && until == nil ? nil : Rotation(digest: digest, until: until)
        }

        static func == (lhs: Rotation, rhs: Rotation) -> Bool {
            lhs.digest == rhs.digest && lhs.until == rhs.until
        }

        func hash(into hasher: inout Hasher) {
            hasher.combine(digest)
            hasher.combine(until)
        }
    }

    private static func timestamp(_ milliseconds: Int64) -> Timestamp? {
        milliseconds == .min ? nil : Timestamp(millisecondsSinceEpoch: milliseconds)
    }

    private static func milliseconds(_ timestamp: Timestamp?) -> Int64 {
        // An instant at `Int64.min` (no parser makes one) is kept one millisecond later,
        // never read back as none: an expiry must not turn into no expiry.
        guard let timestamp else { return .min }
        return max(timestamp.millisecondsSinceEpoch, .min + 1)
    }

    public init(
        id: KeyID,
        digest: KeyDigest,
        name: String = "",
        scopes: [ScopePattern],
        limits: [LimitSpec] = [],
        createdAt: Timestamp,
        expiresAt: Timestamp? = nil,
        revokedAt: Timestamp? = nil,
        previousDigest: KeyDigest? = nil,
        previousDigestExpiresAt: Timestamp? = nil
    ) {
        self.id = id
        self.digest = digest
        self.name = name
        self.scopes = scopes
        self.limits = limits
        self.createdAt = createdAt
        expiresAtMilliseconds = Self.milliseconds(expiresAt)
        revokedAtMilliseconds = Self.milliseconds(revokedAt)
        rotation = Rotation.make(digest: previousDigest, until: previousDigestExpiresAt)
    }

    /// Every digest that finds this key: the current one and, after a rotation, the previous.
    public var digests: [KeyDigest] {
        previousDigest.map { [digest, $0] } ?? [digest]
    }

    /// Whether a request presenting the secret with `presented` digest is refused as revoked:
    /// only the current secret, or the previous one inside its overlap, opens the key (a
    /// stale cache entry found by any other digest must never open it).
    @inlinable
    public func refusesRetired(_ presented: KeyDigest, at instant: Timestamp) -> Bool {
        guard presented != digest else { return false }
        guard presented == previousDigest, let until = previousDigestExpiresAt else { return true }
        return instant >= until
    }

    /// The record after a rotation to `newDigest`: the current digest becomes the previous
    /// one, accepted until `until`; id, scopes, limits and usage stay.
    public func rotated(to newDigest: KeyDigest, previousUntil until: Timestamp) -> APIKey {
        var key = self
        key.rotation = Rotation.make(digest: digest, until: until)
        key.digest = newDigest
        return key
    }

    /// Whether `path` (normalized, no leading slash) is in any of the key's scopes.
    @inlinable
    public func reaches(_ path: Substring) -> Bool {
        scopes.contains { $0.matches(path) }
    }

    public func isExpired(at instant: Timestamp) -> Bool {
        expiresAt.map { instant >= $0 } ?? false
    }

    /// Why a request presenting the secret with `presented` digest at `instant` is refused
    /// before its scope or quota is looked at, if it is: `keyRevoked` for a revoked key or a
    /// retired secret (see ``refusesRetired(_:at:)``), ahead of `keyExpired`. Every store
    /// decides it here, so that the two answers never differ between stores.
    public func refusal(presenting presented: KeyDigest, at instant: Timestamp) -> AdmissionDecision.Outcome? {
        if revokedAt != nil || refusesRetired(presented, at: instant) { return .keyRevoked }
        if isExpired(at: instant) { return .keyExpired }
        return nil
    }

    /// The RateLimit policy name of each limit, made unique within the key so that two
    /// limits of the same scope and period stay apart in the header fields.
    public var policyNames: [String] {
        var seen: [String: Int] = [:]
        return limits.map { limit in
            let base = limit.policyName
            let count = seen[base, default: 0] + 1
            seen[base] = count
            return count == 1 ? base : "\(base)-\(count)"
        }
    }
}

/// What an operator asks for when creating a key; the store fills in id and time.
public struct KeyDraft: Sendable, Hashable {
    public var name: String
    public var scopes: [ScopePattern]
    public var limits: [LimitSpec]
    public var expiresAt: Timestamp?

    public init(name: String = "", scopes: [ScopePattern], limits: [LimitSpec] = [], expiresAt: Timestamp? = nil) {
        self.name = name
        self.scopes = scopes
        self.limits = limits
        self.expiresAt = expiresAt
    }
}
