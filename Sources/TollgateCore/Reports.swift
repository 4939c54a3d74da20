/// A key as listings show it: everything but the secret, with its state spelled out.
public struct KeyReport: Sendable, Hashable, Codable {
    public var id: KeyID
    public var name: String
    public var scopes: [ScopePattern]
    public var limits: [LimitSpec]
    /// `active`, `revoked` or `expired`.
    public var status: String
    public var createdAt: String
    public var expiresAt: String?
    public var revokedAt: String?

    enum CodingKeys: String, CodingKey {
        case id, name, scopes, limits, status
        case createdAt = "created_at"
        case expiresAt = "expires_at"
        case revokedAt = "revoked_at"
    }

    public init(_ key: APIKey, now: Timestamp) {
        id = key.id
        name = key.name
        scopes = key.scopes
        limits = key.limits
        status = Self.status(of: key, at: now)
        createdAt = key.createdAt.iso8601
        expiresAt = key.expiresAt?.iso8601
        revokedAt = key.revokedAt?.iso8601
    }

    /// `active`, `revoked` or `expired`, as listings and usage reports spell it.
    public static func status(of key: APIKey, at now: Timestamp) -> String {
        key.revokedAt != nil ? "revoked" : key.isExpired(at: now) ? "expired" : "active"
    }
}

/// A key's usage as `tollgate usage ID --json` and the admin API report it.
public struct UsageReport: Sendable, Hashable, Codable {
    public struct API: Sendable, Hashable, Codable {
        public var admitted: Int64
        public var denied: Int64
        /// Refusals by problem code (`scope_denied`, `quota_exceeded`, `key_revoked`, `key_expired`).
        public var deniedByReason: [String: Int64]

        enum CodingKeys: String, CodingKey {
            case admitted, denied
            case deniedByReason = "denied_by_reason"
        }
    }

    public struct Limit: Sendable, Hashable, Codable {
        public var scope: String
        public var limit: Int64
        public var period: QuotaPeriod
        public var used: Int64
        public var remaining: Int64
        /// When the current window ends (RFC 3339), or `null` for `total`.
        public var resetsAt: String?

        enum CodingKeys: String, CodingKey {
            case scope, limit, period, used, remaining
            case resetsAt = "resets_at"
        }

        public func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(scope, forKey: .scope)
            try container.encode(limit, forKey: .limit)
            try container.encode(period, forKey: .period)
            try container.encode(used, forKey: .used)
            try container.encode(remaining, forKey: .remaining)
            try container.encode(resetsAt, forKey: .resetsAt)  // an explicit null, not a missing field
        }
    }

    public var id: KeyID
    public var name: String
    /// `active`, `revoked` or `expired`: what is left of a limit serves nothing unless the
    /// key is active.
    public var status: String
    public var apis: [String: API]
    public var limits: [Limit]

    public init(key: APIKey, usage: UsageSnapshot?, now: Timestamp) {
        id = key.id
        name = key.name
        status = KeyReport.status(of: key, at: now)
        apis = (usage?.apis ?? [:]).mapValues { counts in
            API(
                admitted: counts.admitted,
                denied: counts.denied,
                deniedByReason: [
                    AdmissionDecision.Outcome.scopeDenied.rawValue: counts.scopeDenied,
                    AdmissionDecision.Outcome.quotaExceeded.rawValue: counts.quotaExceeded,
                    AdmissionDecision.Outcome.keyRevoked.rawValue: counts.keyRevoked,
                    AdmissionDecision.Outcome.keyExpired.rawValue: counts.keyExpired,
                ]
            )
        }
        limits = key.limits.map { limit in
            let window = limit.period.window(containing: now)
            let used = usage?.counters[limit.counterID]?.used(in: window) ?? 0
            return Limit(
                scope: limit.scope.description,
                limit: limit.quota,
                period: limit.period,
                used: used,
                remaining: max(0, limit.quota - used),
                resetsAt: window.end.map { Timestamp(secondsSinceEpoch: $0).iso8601 }
            )
        }
    }
}

/// One line of a `keys import` file (NDJSON): a key with its secret (`key`) or, for keys
/// migrated from a system that kept only digests, its SHA-256 `digest` in hex.
public struct KeyImportLine: Sendable, Codable {
    public var id: String?
    public var key: String?
    public var digest: String?
    public var name: String?
    public var scopes: [ScopePattern]
    public var limits: [LimitSpec]?
    public var expiresAt: String?

    public init(
        id: String? = nil, key: String? = nil, digest: String? = nil, name: String? = nil, scopes: [ScopePattern],
        limits: [LimitSpec]? = nil, expiresAt: String? = nil
    ) {
        self.id = id
        self.key = key
        self.digest = digest
        self.name = name
        self.scopes = scopes
        self.limits = limits
        self.expiresAt = expiresAt
    }

    enum CodingKeys: String, CodingKey {
        case id, key, digest, name, scopes, limits
        case expiresAt = "expires_at"
    }
}
