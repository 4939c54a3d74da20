import Testing

@testable import TollgateCore

/// The cache over ``KeyIndex`` must find, refuse, reindex and evict exactly as the
/// dictionaries it replaced (``OldKeyCache``) did, conflicts between keys included.
@Suite struct KeyCacheModelTests {
    final class Held: CachedKey {
        var key: APIKey
        var newer: Held?
        var older: Held?
        init(_ key: APIKey) { self.key = key }
    }

    static func describe(_ lookup: KeyCache<Held>.Lookup) -> String {
        switch lookup {
        case .held(let entry): "held \(entry.key.id)"
        case .unknown: "unknown"
        case .miss: "miss"
        }
    }

    static func describe(_ lookup: OldKeyCache<Held>.Lookup) -> String {
        switch lookup {
        case .held(let entry): "held \(entry.key.id)"
        case .unknown: "unknown"
        case .miss: "miss"
        }
    }

    @Test(arguments: 1...12 as ClosedRange<UInt64>) func findsRefusesAndEvictsAsTheDictionariesDid(seed: UInt64) {
        var random = SplitMix(seed: seed)
        let ids = (0..<40).map { KeyID(rawValue: $0.isMultiple(of: 2) ? "key_\($0)" : KeyID.generate().rawValue) }
        // Fewer digests than ids: keys keep claiming digests another key has.
        let digests = (0..<60).map { KeyDigest(secret: "secret-\($0)") }
        let capacity = seed.isMultiple(of: 3) ? nil : Int(8 + seed)
        var new = KeyCache<Held>(configuration: .init(capacity: capacity))
        var old = OldKeyCache<Held>(configuration: .init(capacity: capacity))
        var now = Timestamp(millisecondsSinceEpoch: 1_000_000)
        func any<T>(_ array: [T]) -> T { array[Int(random.next() % UInt64(array.count))] }
        func record(_ id: KeyID) -> APIKey {
            let previous: KeyDigest? = random.next() % 3 == 0 ? any(digests) : nil
            return APIKey(
                id: id, digest: any(digests), scopes: [.all], createdAt: now, previousDigest: previous,
                previousDigestExpiresAt: previous.map { _ in now })
        }

        for step in 0..<5000 {
            let id = any(ids)
            // Whether an entry may leave: the same answer for both caches at one step.
            let salt = random.next()
            let mayDrop = { (key: APIKey) in (UInt64(truncatingIfNeeded: key.id.rawValue.utf8.count) &+ salt) % 4 != 0 }
            switch random.next() % 100 {
            case 0..<30:
                let key = record(id)
                let a = new.insert(Held(key)) { mayDrop($0.key) }
                let b = old.insert(Held(key)) { mayDrop($0.key) }
                #expect(a == b, "step \(step)")
            case 30..<45:
                // A rotation, or a changed record from the store (Redis's hold), whatever its digests.
                guard let a = new.entry(id: id), let b = old.entry(id: id) else {
                    #expect(new.entry(id: id) == nil && old.entry(id: id) == nil, "step \(step)")
                    continue
                }
                let key =
                    random.next() % 2 == 0
                    ? a.key.rotated(to: any(digests), previousUntil: now) : record(id)
                let (oldDigestsA, oldDigestsB) = (a.key.digests, b.key.digests)
                a.key = key
                b.key = key
                new.reindex(a, oldDigests: oldDigestsA)
                old.reindex(b, oldDigests: oldDigestsB)
            case 45..<80:
                let digest = any(digests)
                #expect(Self.describe(new.lookup(digest, now: now)) == Self.describe(old.lookup(digest, now: now)), "step \(step)")
            case 80..<88:
                let digest = any(digests)
                new.rememberUnknown(digest, now: now)
                old.rememberUnknown(digest, now: now)
            case 88..<90:
                let digest = any(digests)
                new.forgetUnknown(digest)
                old.forgetUnknown(digest)
            case 90..<91:
                new.removeAll()
                old.removeAll()
            default:
                now = Timestamp(millisecondsSinceEpoch: now.millisecondsSinceEpoch + Int64(random.next() % 700))
            }
            #expect(new.count == old.count, "step \(step)")
            #expect(new.entry(id: id)?.key == old.entry(id: id)?.key, "step \(step)")
        }
        #expect(Set(new.entries.map(\.key.id)) == Set(old.entries.map(\.key.id)))
        for digest in digests {
            #expect(new.entry(digest: digest)?.key.id == old.entry(digest: digest)?.key.id)
        }
    }

    /// A record whose previous digest is its current one (no store writes one, a damaged
    /// row could): the entry is indexed under that digest once per mention, and must leave
    /// the index entirely when evicted, or a lookup finds a key the cache no longer holds.
    @Test func anEvictedEntryIsNotFoundByADigestItNamesTwice() {
        var cache = KeyCache<Held>(configuration: .init(capacity: 1))
        let twice = KeyDigest(secret: "twice")
        let start = Timestamp(millisecondsSinceEpoch: 0)
        let held = Held(
            APIKey(id: KeyID(rawValue: "key_a"), digest: twice, scopes: [.all], createdAt: start, previousDigest: twice))
        let first = cache.insert(held)
        #expect(first)
        let old = held.key.digests
        held.key = held.key.rotated(to: KeyDigest(secret: "next"), previousUntil: start)
        cache.reindex(held, oldDigests: old)
        let second = cache.insert(
            Held(APIKey(id: KeyID(rawValue: "key_b"), digest: KeyDigest(secret: "b"), scopes: [.all], createdAt: start)))
        #expect(second)
        #expect(cache.entry(id: KeyID(rawValue: "key_a")) == nil)
        #expect(cache.entry(digest: twice) == nil)
        guard case .miss = cache.lookup(twice, now: start) else {
            Issue.record("an evicted entry was found by its digest")
            return
        }
    }
}
