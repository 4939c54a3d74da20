import Testing

@testable import TollgateCore

/// KeyCache as it was before its open-addressing index (64754cf): dictionaries by digest
/// and id, the model the new one must match.
struct OldKeyCache<Entry: CachedKey> {
    struct Configuration: Sendable {
        /// How many keys stay in memory; beyond it the least recently used that may be dropped
        /// is dropped, and loaded again from the store when next used. `nil` keeps every key:
        /// a store whose memory is its only copy.
        var capacity: Int?
        /// How long a secret that names no key is refused without asking the store again.
        var unknownKeyMilliseconds: Int64
        /// How many unknown secrets are remembered before the list starts over.
        var unknownKeyCapacity: Int

        init(capacity: Int? = nil, unknownKeyMilliseconds: Int64 = 1000, unknownKeyCapacity: Int = 100_000) {
            self.capacity = capacity
            self.unknownKeyMilliseconds = unknownKeyMilliseconds
            self.unknownKeyCapacity = unknownKeyCapacity
        }
    }

    enum Lookup {
        case held(Entry)
        /// Known to name no key until recently: refuse without asking the store.
        case unknown
        /// Not held: the store must look it up.
        case miss
    }

    let configuration: Configuration
    private var byDigest: [KeyDigest: Entry] = [:]
    private var byID: [KeyID: Entry] = [:]
    private var unknown: [KeyDigest: Int64] = [:]
    private var newest: Entry?
    private var oldest: Entry?

    init(configuration: Configuration = .init()) {
        self.configuration = configuration
    }

    var count: Int { byID.count }

    /// Every held entry, in no order.
    var entries: Dictionary<KeyID, Entry>.Values { byID.values }

    /// Finds the entry for a secret's digest and marks it recently used.
    mutating func lookup(_ digest: KeyDigest, now: Timestamp) -> Lookup {
        guard let entry = byDigest[digest] else {
            if let until = unknown[digest] {
                if until > now.millisecondsSinceEpoch { return .unknown }
                unknown[digest] = nil
            }
            return .miss
        }
        if configuration.capacity != nil { touch(entry) }
        return .held(entry)
    }

    func entry(id: KeyID) -> Entry? { byID[id] }

    func entry(digest: KeyDigest) -> Entry? { byDigest[digest] }

    /// Holds `entry` unless its digest or id is held already: the check and the insert are
    /// one step under the owner's lock, so two racing creates of one secret cannot both win.
    /// Beyond the capacity, drops least recently used entries that `mayDrop` allows (never
    /// the one just inserted, which a waiting request is about to use).
    @discardableResult
    mutating func insert(_ entry: Entry, mayDrop: (Entry) -> Bool = { _ in true }) -> Bool {
        let key = entry.key
        let digests = key.digests
        for digest in digests { unknown[digest] = nil }
        guard byID[key.id] == nil, digests.allSatisfy({ byDigest[$0] == nil }) else { return false }
        for digest in digests { byDigest[digest] = entry }
        byID[key.id] = entry
        if let capacity = configuration.capacity {
            link(entry)
            evict(beyond: capacity, sparing: entry, mayDrop: mayDrop)
        }
        return true
    }

    /// Indexes a held entry under its record's digests after the record changed (a
    /// rotation: a new secret, the old one kept as the previous), forgetting `oldDigests`
    /// the record no longer has.
    mutating func reindex(_ entry: Entry, oldDigests: [KeyDigest]) {
        let digests = entry.key.digests
        guard digests != oldDigests else { return }
        for digest in oldDigests where !digests.contains(digest) && byDigest[digest] === entry {
            byDigest[digest] = nil
        }
        for digest in digests where byDigest[digest] == nil {
            byDigest[digest] = entry
            unknown[digest] = nil
        }
    }

    /// Drops every entry and every remembered unknown secret.
    mutating func removeAll() {
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
    mutating func rememberUnknown(_ digest: KeyDigest, now: Timestamp) {
        guard byDigest[digest] == nil else { return }
        if unknown.count >= configuration.unknownKeyCapacity { unknown.removeAll(keepingCapacity: true) }
        unknown[digest] = now.millisecondsSinceEpoch + configuration.unknownKeyMilliseconds
    }

    /// Forgets that a digest was unknown: a key with it was just created.
    mutating func forgetUnknown(_ digest: KeyDigest) {
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
                for digest in victim.key.digests where byDigest[digest] === victim { byDigest[digest] = nil }
                byID[victim.key.id] = nil
            } else {
                touch(victim)
            }
        }
    }
}
