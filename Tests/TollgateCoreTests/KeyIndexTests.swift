import Testing

@testable import TollgateCore

@Suite struct KeyIndexTests {
    final class Item {
        let name: Int
        init(_ name: Int) { self.name = name }
    }

    /// Tags chosen to collide and to wrap around the end of the table, where deletion by
    /// shifting back is easiest to get wrong; checked against a plain dictionary after
    /// every step.
    @Test func findsEveryEntryThroughCollisionsRemovalsAndGrowth() {
        var index = KeyIndex<Item>()
        var expected: [Int: (item: Item, tag: UInt32)] = [:]
        var generator = SplitMix(seed: 7)
        for step in 0..<6000 {
            let name = Int(generator.next() % 1000)
            // Few distinct tags: long runs of equal and neighbouring slots.
            let tag = UInt32(truncatingIfNeeded: generator.next() % 256) &+ (step.isMultiple(of: 3) ? 0xFFFF_FF00 : 0)
            if let held = expected[name] {
                index.remove(held.item, tag: held.tag)
                expected[name] = nil
            } else {
                let item = Item(name)
                index.insert(item, tag: tag)
                expected[name] = (item, tag)
            }
            if step.isMultiple(of: 61) || step > 5990 {
                #expect(index.count == expected.count)
                for (name, held) in expected {
                    #expect(index.find(tag: held.tag) { $0.name == name } === held.item)
                }
            }
        }
        #expect(Set(index.entries.map(\.name)) == Set(expected.keys))
    }

    @Test func aRemovalLeavesOtherEntriesOfTheSameTag() {
        var index = KeyIndex<Item>()
        let items = (0..<5).map(Item.init)
        for item in items { index.insert(item, tag: 3) }
        index.remove(items[1], tag: 3)
        index.remove(items[1], tag: 3)
        index.remove(items[2], tag: 4)
        #expect(index.count == 4)
        for item in items where item !== items[1] {
            #expect(index.find(tag: 3) { $0 === item } === item)
        }
        #expect(index.find(tag: 3) { $0 === items[1] } == nil)
    }

    /// The cache over the index: a million-key server's lookups by digest and id, with
    /// eviction removing entries from the middle of runs.
    @Test func aBoundedCacheFindsWhatItHoldsAndNothingItDropped() throws {
        final class Held: CachedKey {
            var key: APIKey
            var newer: Held?
            var older: Held?
            init(_ key: APIKey) { self.key = key }
        }
        var cache = KeyCache<Held>(configuration: .init(capacity: 1000))
        let keys = (0..<5000).map { number in
            APIKey(
                id: KeyID(rawValue: "key_\(number)"), digest: KeyDigest(secret: "secret-\(number)"), scopes: [.all],
                createdAt: Timestamp(millisecondsSinceEpoch: 0))
        }
        for key in keys { cache.insert(Held(key)) }
        #expect(cache.count == 1000)
        for (number, key) in keys.enumerated() {
            let held = number >= 4000
            #expect((cache.entry(digest: key.digest) != nil) == held)
            #expect((cache.entry(id: key.id) != nil) == held)
        }
        // A rotation: both secrets find the key, then only the newer two.
        let rotated = try #require(cache.entry(id: keys[4500].id))
        let first = KeyDigest(secret: "rotated-1")
        let second = KeyDigest(secret: "rotated-2")
        var old = rotated.key.digests
        rotated.key = rotated.key.rotated(to: first, previousUntil: Timestamp(millisecondsSinceEpoch: 1))
        cache.reindex(rotated, oldDigests: old)
        #expect(cache.entry(digest: first) === rotated && cache.entry(digest: keys[4500].digest) === rotated)
        old = rotated.key.digests
        rotated.key = rotated.key.rotated(to: second, previousUntil: Timestamp(millisecondsSinceEpoch: 1))
        cache.reindex(rotated, oldDigests: old)
        #expect(cache.entry(digest: second) === rotated && cache.entry(digest: first) === rotated)
        #expect(cache.entry(digest: keys[4500].digest) == nil)
    }
}

/// A seeded generator, so that a failure repeats.
struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
