/// An open-addressing hash index of cache entries: 12 bytes a slot (a 32-bit tag of the
/// hash and a reference), where a `Dictionary` keyed by digest spends 40 bytes a bucket on
/// a copy of the key beside the reference. A million held keys are indexed twice (by digest
/// and by id), so this is about 85 bytes a key less.
///
/// The entry itself is what a probe compares once the tag matches (a digest is part of the
/// record the entry holds), so no key is stored twice. Linear probing, at most three
/// quarters full, and deletion by shifting back the entries behind the hole, so that no
/// tombstones slow later probes. Not thread-safe: its owner keeps it under a lock.
struct KeyIndex<Entry: AnyObject> {
    /// The low 32 bits of each slot's hash: which slot it belongs in (at most 2^32 slots)
    /// and a filter that spares most probes a look at an entry that is not the one wanted.
    private var tags: [UInt32] = []
    private var slots: [Entry?] = []
    private(set) var count = 0

    init() {}

    /// The entry indexed under `tag` that `matches` accepts.
    func find(tag: UInt32, where matches: (Entry) -> Bool) -> Entry? {
        guard let index = index(tag: tag, where: matches) else { return nil }
        return slots[index]
    }

    /// Indexes `entry` under `tag` (the caller has checked that nothing it means to find
    /// under this key is indexed already).
    mutating func insert(_ entry: Entry, tag: UInt32) {
        if (count + 1) * 4 > slots.count * 3 { grow() }
        place(entry, tag: tag)
        count += 1
    }

    /// Removes `entry`'s slot under `tag`, if it has one.
    mutating func remove(_ entry: Entry, tag: UInt32) {
        guard var hole = index(tag: tag, where: { $0 === entry }) else { return }
        let mask = slots.count - 1
        slots[hole] = nil
        count -= 1
        // Move back each following entry of the run whose own slot is at or before the
        // hole, so that every entry stays reachable from its slot without a gap.
        var next = (hole + 1) & mask
        while let moving = slots[next] {
            let home = Int(tags[next]) & mask
            if (next - home) & mask >= (next - hole) & mask {
                slots[hole] = moving
                tags[hole] = tags[next]
                slots[next] = nil
                hole = next
            }
            next = (next + 1) & mask
        }
    }

    mutating func removeAll() {
        tags = []
        slots = []
        count = 0
    }

    /// Every indexed entry, in no order.
    var entries: [Entry] { slots.compactMap { $0 } }

    private func index(tag: UInt32, where matches: (Entry) -> Bool) -> Int? {
        guard !slots.isEmpty else { return nil }
        let mask = slots.count - 1
        var index = Int(tag) & mask
        while let entry = slots[index] {
            if tags[index] == tag, matches(entry) { return index }
            index = (index + 1) & mask
        }
        return nil
    }

    private mutating func place(_ entry: Entry, tag: UInt32) {
        let mask = slots.count - 1
        var index = Int(tag) & mask
        while slots[index] != nil { index = (index + 1) & mask }
        slots[index] = entry
        tags[index] = tag
    }

    private mutating func grow() {
        let oldTags = tags
        let oldSlots = slots
        let size = Swift.max(16, slots.count * 2)
        tags = Array(repeating: 0, count: size)
        slots = Array(repeating: nil, count: size)
        for (tag, entry) in zip(oldTags, oldSlots) {
            if let entry { place(entry, tag: tag) }
        }
    }
}
