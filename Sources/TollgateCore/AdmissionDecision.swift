/// What the data plane asks of a store for one request on an API route.
public struct AdmissionRequest: Sendable {
    /// The digest of the presented secret; the secret itself never leaves the handler.
    public var digest: KeyDigest
    /// The API the request is for (`api1`), the unit of per-API accounting.
    public var api: String
    /// The normalized path without its leading slash, matched against scopes and limits.
    public var path: String
    public var now: Timestamp

    public init(digest: KeyDigest, api: String, path: String, now: Timestamp) {
        self.digest = digest
        self.api = api
        self.path = path
        self.now = now
    }
}

/// The answer to an ``AdmissionRequest``: the outcome, and the quota state that the
/// response reports in its RateLimit header fields.
public struct AdmissionDecision: Sendable, Hashable {
    public enum Outcome: String, Sendable, Hashable, CaseIterable {
        case admitted
        case invalidKey = "invalid_api_key"
        case keyRevoked = "key_revoked"
        case keyExpired = "key_expired"
        case scopeDenied = "scope_denied"
        case quotaExceeded = "quota_exceeded"
        case storeUnavailable = "store_unavailable"
    }

    public var outcome: Outcome
    /// The key's public id when the secret named a known key.
    public var keyID: KeyID?
    /// One entry per limit that applies to the request, in the key's order; empty unless
    /// the key is valid.
    public var limits: [LimitStatus]
    /// Seconds until every spent limit resets, for `Retry-After`; `nil` when one never does.
    public var retryAfter: Int64?
    /// For an admitted request: which windows and which state of the key's usage its units
    /// were taken from, so that ``KeyStore/giveBack(_:decision:)`` returns them there or
    /// nowhere. `nil` for a refusal.
    public var receipt: Receipt?

    /// Where an admission's units were taken: what a give-back needs to find them, and
    /// nothing that costs an allocation to carry.
    public struct Receipt: Sendable, Hashable {
        /// The instant whose windows the units were taken from: the store's clock at the
        /// decision (Redis's `TIME` for the Redis store), never the give-back's.
        public var decidedAt: Timestamp
        /// The state of the key's usage at the decision: a ``KeyState`` generation for the
        /// stores that count in process, the usage epoch for Redis. A usage reset or a change
        /// of limits moves it on, and a give-back from before then gives nothing.
        public var generation: Int64

        public init(decidedAt: Timestamp, generation: Int64) {
            self.decidedAt = decidedAt
            self.generation = generation
        }
    }

    public init(outcome: Outcome, keyID: KeyID? = nil, limits: [LimitStatus] = [], retryAfter: Int64? = nil, receipt: Receipt? = nil) {
        self.outcome = outcome
        self.keyID = keyID
        self.limits = limits
        self.retryAfter = retryAfter
        self.receipt = receipt
    }

    public static let invalidKey = AdmissionDecision(outcome: .invalidKey)
    public static let storeUnavailable = AdmissionDecision(outcome: .storeUnavailable)
}

/// One limit's state as a response reports it (draft-ietf-httpapi-ratelimit-headers-10).
public struct LimitStatus: Sendable, Hashable {
    /// The policy name, unique within the key (`"total"`, `"api1-minute"`).
    public var policy: String
    public var quota: Int64
    /// The window length in seconds; `nil` for `total`.
    public var windowSeconds: Int64?
    public var remaining: Int64
    /// Seconds until the window resets; `nil` for `total`.
    public var resetSeconds: Int64?
    /// Whether this limit refused the request.
    public var isSpent: Bool

    public init(policy: String, quota: Int64, windowSeconds: Int64?, remaining: Int64, resetSeconds: Int64?, isSpent: Bool) {
        self.policy = policy
        self.quota = quota
        self.windowSeconds = windowSeconds
        self.remaining = remaining
        self.resetSeconds = resetSeconds
        self.isSpent = isSpent
    }
}

/// One counter's value in one window, as stores persist it.
public struct UsageCounter: Sendable, Hashable, Codable {
    /// The window's first second; a counter whose window has passed counts as zero.
    public var windowStart: Int64
    public var used: Int64

    public init(windowStart: Int64, used: Int64) {
        self.windowStart = windowStart
        self.used = used
    }

    /// The count in `window`: zero once the window has passed. A counter from a later
    /// window (the clock stepped back) still counts, so a step back never resets a quota.
    public func used(in window: QuotaWindow) -> Int64 {
        windowStart >= window.start ? used : 0
    }
}

/// Per key and per API: how many requests were admitted, and how many refused for which
/// reason (reasons that name no key, such as an unknown secret, cannot be counted per key).
public struct APIUsage: Sendable, Hashable {
    public var admitted: Int64 = 0
    public var scopeDenied: Int64 = 0
    public var quotaExceeded: Int64 = 0
    public var keyRevoked: Int64 = 0
    public var keyExpired: Int64 = 0

    public init(admitted: Int64 = 0, scopeDenied: Int64 = 0, quotaExceeded: Int64 = 0, keyRevoked: Int64 = 0, keyExpired: Int64 = 0) {
        self.admitted = admitted
        self.scopeDenied = scopeDenied
        self.quotaExceeded = quotaExceeded
        self.keyRevoked = keyRevoked
        self.keyExpired = keyExpired
    }

    public var denied: Int64 { scopeDenied + quotaExceeded + keyRevoked + keyExpired }

    mutating func count(_ outcome: AdmissionDecision.Outcome) {
        switch outcome {
        case .admitted: admitted += 1
        case .scopeDenied: scopeDenied += 1
        case .quotaExceeded: quotaExceeded += 1
        case .keyRevoked: keyRevoked += 1
        case .keyExpired: keyExpired += 1
        case .invalidKey, .storeUnavailable: break
        }
    }

    public func adding(_ other: APIUsage) -> APIUsage {
        APIUsage(
            admitted: admitted + other.admitted,
            scopeDenied: scopeDenied + other.scopeDenied,
            quotaExceeded: quotaExceeded + other.quotaExceeded,
            keyRevoked: keyRevoked + other.keyRevoked,
            keyExpired: keyExpired + other.keyExpired
        )
    }

    /// The counts this one holds beyond `other`: what a store must add to go from one to the other.
    public func subtracting(_ other: APIUsage) -> APIUsage {
        APIUsage(
            admitted: admitted - other.admitted,
            scopeDenied: scopeDenied - other.scopeDenied,
            quotaExceeded: quotaExceeded - other.quotaExceeded,
            keyRevoked: keyRevoked - other.keyRevoked,
            keyExpired: keyExpired - other.keyExpired
        )
    }
}
