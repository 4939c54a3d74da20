/// An open-addressing hash index of cache entries: 12 bytes a slot (a 32-bit tag of the
/// hash and a reference), where a `Dictionary` keyed by digest spends 40 bytes a bucket on
/// a copy of the key beside the reference. A million held keys are indexed twice (by digest
/// and by id), so this is about 85 bytes a key less.
///
/// The entry itself is what a probe compares once the tag matches (a digest is part of the
/// record the entry holds), so no key is stored twice. Linear probing, at most three
/// quarters full, and deletion by shifting back the entries behind the hole, so that no
/// tombstones slow later probes. It grows by half, not double (a tag picks its slot by a
/// multiply and shift, so any size works): after growing it is two thirds full, not
/// half. Not thread-safe: its owner keeps it under a lock.
struct KeyIndex<Entry: AnyObject> {
    /// The low 32 bits of each slot's hash: which slot it belongs in (see ``home(_:)``)
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
        slots[hole] = nil
        count -= 1
        // Move back each following entry of the run whose own slot is at or before the
        // hole, so that every entry stays reachable from its slot without a gap.
        var next = after(hole)
        while let moving = slots[next] {
            if distance(from: home(tags[next]), to: next) >= distance(from: hole, to: next) {
                slots[hole] = moving
                tags[hole] = tags[next]
                slots[next] = nil
                hole = next
            }
            next = after(next)
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
        var index = home(tag)
        while let entry = slots[index] {
            if tags[index] == tag, matches(entry) { return index }
            index = after(index)
        }
        return nil
    }

    /// The slot a tag belongs in: the tag scaled to the table's size (Lemire's
    /// multiply-shift), which spreads tags evenly over any size, a power of two or not.
    private func home(_ tag: UInt32) -> Int {
        Int((UInt64(tag) &* UInt64(slots.count)) >> 32)
    }

    private func after(_ index: Int) -> Int {
        index + 1 == slots.count ? 0 : index + 1
    }

    /// How many steps forward, wrapping around, from one slot to another.
    private func distance(from start: Int, to end: Int) -> Int {
        end >= start ? end - start : end + slots.count - start
    }

    private mutating func place(_ entry: Entry, tag: UInt32) {
        var index = home(tag)
        while slots[index] != nil { index = after(index) }
        slots[index] = entry
        tags[index] = tag
    }

    private mutating func grow() {
        let oldTags = tags
        let oldSlots = slots
        let size = Swift.max(16, slots.count + slots.count / 2)
        tags = Array(repeating: 0, count: size)
        slots = Array(repeating: nil, count: size)
        for (tag, entry) in zip(oldTags, oldSlots) {
            if let entry { place(entry, tag: tag) }
        }
    }
}
