/// A key record held in memory by a ``KeyCache``: the ledger's ``KeyState`` (record and
/// local counts) or a shared store's record with its script plans.
///
/// A class so that the cache can keep it in a recency list and its owner can change it in
/// place; it never leaves the lock its cache lives under.
public protocol CachedKey: AnyObject {
    var key: APIKey { get }
    /// Neighbours in the cache's recency list (most recently used first); only the cache
    /// sets them.
    var newer: Self? { get set }
    var older: Self? { get set }
}

/// The key records a process holds, found by digest or id, bounded by a recency list, and
/// the secrets recently found to name no key.
///
/// One type for every store that keeps records in memory (the ledger of memory and SQLite,
/// Redis's record cache), so that lookup, eviction and the unknown-secret memory behave the
/// same on each. Not thread-safe: its owner keeps it under a lock.
public struct KeyCache<Entry: CachedKey> {
    public struct Configuration: Sendable {
        /// How many keys stay in memory; beyond it the least recently used that may be dropped
        /// is dropped, and loaded again from the store when next used. `nil` keeps every key:
        /// a store whose memory is its only copy.
        public var capacity: Int?
        /// How long a secret that names no key is refused without asking the store again.
        public var unknownKeyMilliseconds: Int64
        /// How many unknown secrets are remembered before the list starts over.
        public var unknownKeyCapacity: Int

        public init(capacity: Int? = nil, unknownKeyMilliseconds: Int64 = 1000, unknownKeyCapacity: Int = 100_000) {
            self.capacity = capacity
            self.unknownKeyMilliseconds = unknownKeyMilliseconds
            self.unknownKeyCapacity = unknownKeyCapacity
        }
    }

    public enum Lookup {
        case held(Entry)
        /// Known to name no key until recently: refuse without asking the store.
        case unknown
        /// Not held: the store must look it up.
        case miss
    }

    public let configuration: Configuration
    /// Each entry once per digest of its record (two after a rotation), and once by id.
    private var byDigest = KeyIndex<Entry>()
    private var byID = KeyIndex<Entry>()
    private var unknown: [KeyDigest: Int64] = [:]
    private var newest: Entry?
    private var oldest: Entry?

    public init(configuration: Configuration = .init()) {
        self.configuration = configuration
    }

    public var count: Int { byID.count }

    /// Every held entry, in no order.
    public var entries: [Entry] { byID.entries }

    /// Finds the entry for a secret's digest and marks it recently used.
    public mutating func lookup(_ digest: KeyDigest, now: Timestamp) -> Lookup {
        guard let entry = entry(digest: digest) else {
            if let until = unknown[digest] {
                if until > now.millisecondsSinceEpoch { return .unknown }
                unknown[digest] = nil
            }
            return .miss
        }
        if configuration.capacity != nil { touch(entry) }
        return .held(entry)
    }

    public func entry(id: KeyID) -> Entry? {
        byID.find(tag: Self.tag(id)) { $0.key.id == id }
    }

    public func entry(digest: KeyDigest) -> Entry? {
        byDigest.find(tag: Self.tag(digest)) { $0.key.digest == digest || $0.key.previousDigest == digest }
    }

    /// A digest is SHA-256 output: its first word is as good a hash as any.
    private static func tag(_ digest: KeyDigest) -> UInt32 { UInt32(truncatingIfNeeded: digest.words.0) }

    /// Ids are chosen by operators, so they are hashed with the process's random seed.
    private static func tag(_ id: KeyID) -> UInt32 { UInt32(truncatingIfNeeded: id.hashValue) }

    /// Holds `entry` unless its digest or id is held already: the check and the insert are
    /// one step under the owner's lock, so two racing creates of one secret cannot both win.
    /// Beyond the capacity, drops least recently used entries that `mayDrop` allows (never
    /// the one just inserted, which a waiting request is about to use).
    @discardableResult
    public mutating func insert(_ entry: Entry, mayDrop: (Entry) -> Bool = { _ in true }) -> Bool {
        let key = entry.key
        let digests = key.digests
        for digest in digests { unknown[digest] = nil }
        guard self.entry(id: key.id) == nil, digests.allSatisfy({ self.entry(digest: $0) == nil }) else { return false }
        // Once per distinct digest: a record naming one digest twice (a damaged row) would
        // otherwise keep a slot that eviction, which removes one per digest it still names
        // after a rotation, leaves behind, and the dropped entry would still be found.
        for (index, digest) in digests.enumerated() where !digests[..<index].contains(digest) {
            byDigest.insert(entry, tag: Self.tag(digest))
        }
        byID.insert(entry, tag: Self.tag(key.id))
        if let capacity = configuration.capacity {
            link(entry)
            evict(beyond: capacity, sparing: entry, mayDrop: mayDrop)
        }
        return true
    }

    /// Indexes a held entry under its record's digests after the record changed (a
    /// rotation: a new secret, the old one kept as the previous), forgetting `oldDigests`
    /// the record no longer has.
    public mutating func reindex(_ entry: Entry, oldDigests: [KeyDigest]) {
        let digests = entry.key.digests
        guard digests != oldDigests else { return }
        for digest in oldDigests where !digests.contains(digest) {
            byDigest.remove(entry, tag: Self.tag(digest))
        }
        for digest in digests where self.entry(digest: digest) == nil {
            byDigest.insert(entry, tag: Self.tag(digest))
            unknown[digest] = nil
        }
    }

    /// Drops every entry and every remembered unknown secret.
    public mutating func removeAll() {
        var next = newest
        while let entry = next {
            next = entry.older
            entry.newer = nil
            entry.older = nil
        }
        newest = nil
        oldest = nil
        byDigest.removeAll()
        byID.removeAll()
        unknown.removeAll()
    }

    // MARK: Unknown secrets

    /// Remembers that no key has this digest, so that repeated tries cost no store lookup.
    public mutating func rememberUnknown(_ digest: KeyDigest, now: Timestamp) {
        guard entry(digest: digest) == nil else { return }
        if unknown.count >= configuration.unknownKeyCapacity { unknown.removeAll(keepingCapacity: true) }
        unknown[digest] = now.millisecondsSinceEpoch + configuration.unknownKeyMilliseconds
    }

    /// Forgets that a digest was unknown: a key with it was just created.
    public mutating func forgetUnknown(_ digest: KeyDigest) {
        unknown[digest] = nil
    }

    // MARK: Recency

    private mutating func link(_ entry: Entry) {
        entry.older = newest
        entry.newer = nil
        newest?.newer = entry
        newest = entry
        if oldest == nil { oldest = entry }
    }

    private mutating func unlink(_ entry: Entry) {
        if let newer = entry.newer { newer.older = entry.older } else { newest = entry.older }
        if let older = entry.older { older.newer = entry.newer } else { oldest = entry.newer }
        entry.newer = nil
        entry.older = nil
    }

    private mutating func touch(_ entry: Entry) {
        guard newest !== entry else { return }
        unlink(entry)
        link(entry)
    }

    /// A few steps per call, so that the lock is never held for long; an entry that may not
    /// be dropped yet (its usage not yet written) goes back to the front.
    private mutating func evict(beyond capacity: Int, sparing spared: Entry, mayDrop: (Entry) -> Bool) {
        var steps = 8
        while byID.count > capacity, steps > 0, let victim = oldest, victim !== spared {
            steps -= 1
            if mayDrop(victim) {
                unlink(victim)
                for digest in victim.key.digests { byDigest.remove(victim, tag: Self.tag(digest)) }
                byID.remove(victim, tag: Self.tag(victim.key.id))
            } else {
                touch(victim)
            }
        }
    }
}

/// Plans by request path, made once per key and path rather than per request; bounded,
/// since paths are whatever clients send.
public struct PathPlans<Plan> {
    private var plans: [String: Plan] = [:]

    public init() {}

    public mutating func plan(for path: String, make: () -> Plan) -> Plan {
        if let plan = plans[path] { return plan }
        let plan = make()
        if plans.count >= 64 { plans.removeAll(keepingCapacity: true) }
        plans[path] = plan
        return plan
    }

    public mutating func removeAll() {
        plans.removeAll()
    }
}
