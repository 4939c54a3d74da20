import TollgateCore
import TollgateRESP

/// Redis key names, all under one namespace (`tg` by default), so that several
/// deployments can share a Redis. Everything of one API key carries its id as a hash tag
/// (`{key_…}`), so that its record and counters hash to one slot, as Redis Cluster requires.
struct RedisKeys: Sendable {
    let namespace: String

    var ids: String { namespace + ":ids" }
    var changes: String { namespace + ":changes" }
    /// A random token the first instance writes and every instance remembers: when it is
    /// gone or another, Redis lost what it held (a restart without persistence, a flush).
    var marker: String { namespace + ":store" }

    func digest(_ digest: KeyDigest) -> String { namespace + ":digest:" + digest.hex }
    func record(_ id: KeyID) -> String { "\(namespace):{\(id.rawValue)}:key" }
    func apiUsage(_ id: KeyID) -> String { "\(namespace):{\(id.rawValue)}:api" }
    func counter(_ id: KeyID, _ counter: String) -> String { "\(namespace):{\(id.rawValue)}:c:\(counter)" }
}

/// A key record as a Redis hash: the digest in hex, never the secret; scopes and limits as
/// their spec texts joined by spaces (neither can hold one), times in ms ("" for none).
enum RedisRecord {
    /// `digest, name, scopes, limits, created_at, expires_at, revoked_at`, in that order.
    static func fields(_ key: APIKey) -> [String] {
        [
            key.digest.hex,
            key.name,
            key.scopes.storedText,
            key.limits.storedText,
            String(key.createdAt.millisecondsSinceEpoch),
            key.expiresAt.map { String($0.millisecondsSinceEpoch) } ?? "",
            key.revokedAt.map { String($0.millisecondsSinceEpoch) } ?? "",
        ]
    }

    /// Field-value pairs of a hash reply (a RESP3 map or a RESP2 flat array).
    static func pairs(_ reply: RESPValue) -> [(String, String)] {
        if let map = reply.map {
            return map.compactMap { key, value in key.string.flatMap { k in value.string.map { (k, $0) } } }
        }
        let items = reply.array ?? []
        return stride(from: 0, to: items.count - 1, by: 2).compactMap { index in
            items[index].string.flatMap { k in items[index + 1].string.map { (k, $0) } }
        }
    }

    /// The record's `version` field, moved on by every script that changes the record
    /// (absent, as in records written before it existed: 0).
    static func version(_ reply: RESPValue) -> Int64 {
        pairs(reply).first { $0.0 == "version" }.flatMap { Int64($0.1) } ?? 0
    }

    static func decode(_ reply: RESPValue) throws(TollgateError) -> APIKey {
        let fields = Dictionary(pairs(reply), uniquingKeysWith: { a, _ in a })
        func damaged(_ what: String) -> TollgateError {
            TollgateError(.storeUnavailable, "a key record in Redis has \(what): it was not written by Tollgate")
        }
        guard let id = fields["id"], let digest = fields["digest"].flatMap({ KeyDigest(hex: $0) }) else {
            throw damaged("no id or no valid digest")
        }
        guard let created = fields["created_at"].flatMap({ Int64($0) }) else { throw damaged("no created_at") }
        let scopes = try (fields["scopes"] ?? "").split(separator: " ").map { text throws(TollgateError) in try ScopePattern(parsing: text)
        }
        let limits = try (fields["limits"] ?? "").split(separator: " ").map { text throws(TollgateError) in try LimitSpec(parsing: text) }
        return APIKey(
            id: KeyID(rawValue: id),
            digest: digest,
            name: fields["name"] ?? "",
            scopes: scopes,
            limits: limits,
            createdAt: Timestamp(millisecondsSinceEpoch: created),
            expiresAt: fields["expires_at"].flatMap { Int64($0) }.map(Timestamp.init(millisecondsSinceEpoch:)),
            revokedAt: fields["revoked_at"].flatMap { Int64($0) }.map(Timestamp.init(millisecondsSinceEpoch:)),
            previousDigest: fields["previous_digest"].flatMap { KeyDigest(hex: $0) },
            previousDigestExpiresAt: fields["previous_until"].flatMap { Int64($0) }.map(Timestamp.init(millisecondsSinceEpoch:))
        )
    }
}

/// A key's plan for one path with the script's keys and arguments made once.
struct RedisPlan: Sendable {
    var plan: AdmissionPlan
    /// The record, the per-API hash, then one hash per counter: the scripts' KEYS.
    var keys: [String]
    var keyArguments: [RESPArgument]
    /// The record's version, then each counter's period and quota: the admission's ARGV
    /// after the api and the mode.
    var arguments: [RESPArgument]

    /// The per-API hash, where refusals are counted.
    var apiUsage: String { keys[1] }

    init(key: APIKey, version: Int64, path: String, names: RedisKeys) {
        plan = AdmissionPlan(key: key, path: Substring(path))
        keys = [names.record(key.id), names.apiUsage(key.id)] + plan.counters.map { names.counter(key.id, $0.id) }
        keyArguments = keys.map { .string($0) }
        arguments =
            [.string(String(version))] + plan.counters.flatMap { [RESPArgument.string($0.period.rawValue), .string(String($0.quota))] }
    }
}

/// A record this instance holds, with its script plans by path.
final class RedisCachedKey: CachedKey {
    private(set) var key: APIKey
    /// The record's `version` field when read (see ``RedisRecord/version(_:)``).
    private(set) var version: Int64
    var newer: RedisCachedKey?
    var older: RedisCachedKey?
    private var plans = PathPlans<RedisPlan>()

    init(key: APIKey, version: Int64) {
        self.key = key
        self.version = version
    }

    func plan(for path: String, names: RedisKeys) -> RedisPlan {
        plans.plan(for: path) { RedisPlan(key: key, version: version, path: path, names: names) }
    }

    func replace(key: APIKey, version: Int64) {
        self.key = key
        self.version = version
        plans.removeAll()
    }
}

/// The records this instance holds (the one ``KeyCache`` every store uses: bounded by
/// recency, unknown secrets remembered briefly so that floods of bad keys do not reach
/// Redis), with their plans by path.
struct Cache: @unchecked Sendable {  // only ever touched under its store's lock
    let names: RedisKeys
    private var keys: KeyCache<RedisCachedKey>

    init(names: RedisKeys, configuration: KeyCache<RedisCachedKey>.Configuration) {
        self.names = names
        keys = KeyCache(configuration: configuration)
    }

    enum Lookup: Sendable {
        case held(APIKey, RedisPlan)
        case miss
        case unknown
    }

    mutating func lookup(_ digest: KeyDigest, path: String, now: Timestamp) -> Lookup {
        switch keys.lookup(digest, now: now) {
        case .held(let entry): return .held(entry.key, entry.plan(for: path, names: names))
        case .unknown: return .unknown
        case .miss: return .miss
        }
    }

    /// Holds a record just read from Redis at `version`, replacing any held under its id
    /// unless the one held is newer: reads of one key race (a lookup, the change stream, an
    /// admin call), and one that started before a revocation must not land after it. With
    /// `evenIfOlder` (the admission script found another version in Redis, as after a
    /// snapshot was restored) the read replaces the record held whatever its version: the
    /// script checks the next admission again, so a read that lost a race is caught there.
    mutating func hold(_ key: APIKey, version: Int64, evenIfOlder: Bool = false) {
        if let held = keys.entry(id: key.id) {
            guard version >= held.version || evenIfOlder else { return }
            let oldDigests = held.key.digests
            held.replace(key: key, version: version)
            keys.reindex(held, oldDigests: oldDigests)
        } else {
            keys.insert(RedisCachedKey(key: key, version: version))
        }
    }

    /// Takes a changed record if the key is held (and it is not older than the one held),
    /// and forgets its digest as unknown.
    mutating func refresh(_ key: VersionedKey) {
        keys.forgetUnknown(key.key.digest)
        guard keys.entry(id: key.key.id) != nil else { return }
        hold(key.key, version: key.version)
    }

    func holds(_ id: KeyID) -> Bool {
        keys.entry(id: id) != nil
    }

    mutating func forgetUnknown(_ digest: KeyDigest) {
        keys.forgetUnknown(digest)
    }

    mutating func rememberUnknown(_ digest: KeyDigest, now: Timestamp) {
        keys.rememberUnknown(digest, now: now)
    }

    mutating func removeAll() {
        keys.removeAll()
    }
}
