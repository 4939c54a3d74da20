/// A change to some of a key's fields, which a store applies in one step.
///
/// Only the fields given change: two edits racing on different fields both land, where a
/// read, a change and a write-back of the whole record would put the first one's field back.
/// Digests, rotation and revocation are never part of an edit, so that an edit never brings
/// a revoked key back.
public struct KeyEdit: Sendable, Hashable {
    /// What an edit does to the key's expiry.
    public enum Expiry: Sendable, Hashable {
        /// The key no longer expires.
        case never
        /// The key expires at this instant.
        case at(Timestamp)

        /// `.never` for `nil`, else `.at(instant)`.
        public init(_ instant: Timestamp?) {
            self = instant.map(Expiry.at) ?? .never
        }

        /// The expiry as the record holds it.
        public var instant: Timestamp? {
            switch self {
            case .never: nil
            case .at(let instant): instant
            }
        }
    }

    /// The new name; `nil` keeps the name.
    public var name: String?
    /// The new scopes, replacing all of them; `nil` keeps them.
    public var scopes: [ScopePattern]?
    /// The new limits, replacing all of them; `nil` keeps them.
    public var limits: [LimitSpec]?
    /// The new expiry; `nil` keeps it.
    public var expiry: Expiry?

    public init(name: String? = nil, scopes: [ScopePattern]? = nil, limits: [LimitSpec]? = nil, expiry: Expiry? = nil) {
        self.name = name
        self.scopes = scopes
        self.limits = limits
        self.expiry = expiry
    }

    /// Whether the edit changes nothing.
    public var isEmpty: Bool {
        name == nil && scopes == nil && limits == nil && expiry == nil
    }

    /// `key` with the given fields changed and every other field as it was.
    public func applied(to key: APIKey) -> APIKey {
        var key = key
        if let name { key.name = name }
        if let scopes { key.scopes = scopes }
        if let limits { key.limits = limits }
        if let expiry { key.expiresAt = expiry.instant }
        return key
    }
}

/// A key's record with the version the store holds it at: what an HTTP `ETag` names, so
/// that a client can edit or revoke only the record it read (`If-Match`).
///
/// The version moves on with every change to the record (and may with a usage reset); it
/// is only ever compared for equality, and only within one store.
public struct VersionedKey: Sendable, Hashable {
    public var key: APIKey
    public var version: Int64

    public init(key: APIKey, version: Int64) {
        self.key = key
        self.version = version
    }

    /// Throws `.versionMismatch` unless `expected` is `nil` or this record's version.
    public func check(_ expected: Int64?) throws(TollgateError) {
        guard let expected, expected != version else { return }
        throw TollgateError.versionMismatch(key.id)
    }
}

extension TollgateError {
    /// The key is no longer at the version the caller read.
    public static func versionMismatch(_ id: KeyID) -> TollgateError {
        TollgateError(.versionMismatch, "the key \(id) has changed since it was read: read it again and repeat the change")
    }
}
