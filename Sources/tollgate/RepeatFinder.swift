import TollgateCore

/// Finds a key (secret or digest) or an id that appears on two lines of an import, without
/// a dictionary per line: each line adds a 32-byte value and its line number to an array
/// (40 bytes; a million lines take 40 MB), and ``first()`` sorts the arrays and reports the
/// repeat a line-by-line reading would have met first.
///
/// Ids are kept as the SHA-256 of their text, so that a long id costs no more than a short
/// one; the caller reads the repeated id from its line again to name it.
struct RepeatFinder {
    struct Repeat: Equatable {
        enum Kind: Equatable {
            case id
            case digest
        }
        var kind: Kind
        var first: Int
        var second: Int
    }

    private struct Entry {
        var words: (UInt64, UInt64, UInt64, UInt64)
        var line: UInt32

        init(_ digest: KeyDigest, line: Int) {
            words = digest.words
            self.line = UInt32(truncatingIfNeeded: line)
        }

        static func < (lhs: Entry, rhs: Entry) -> Bool {
            if lhs.words.0 != rhs.words.0 { return lhs.words.0 < rhs.words.0 }
            if lhs.words.1 != rhs.words.1 { return lhs.words.1 < rhs.words.1 }
            if lhs.words.2 != rhs.words.2 { return lhs.words.2 < rhs.words.2 }
            if lhs.words.3 != rhs.words.3 { return lhs.words.3 < rhs.words.3 }
            return lhs.line < rhs.line
        }

        func sameValue(as other: Entry) -> Bool {
            words == other.words
        }
    }

    private var digests: [Entry] = []
    private var ids: [Entry] = []

    mutating func add(digest: KeyDigest, id: KeyID?, line: Int) {
        digests.append(Entry(digest, line: line))
        if let id { ids.append(Entry(KeyDigest(secret: id.rawValue), line: line)) }
    }

    /// The repeat whose second line comes first (an id before a key on the same line, as a
    /// line-by-line check finds it), or `nil` if every key and id is on one line only.
    mutating func first() -> Repeat? {
        let id = Self.firstRepeat(&ids)
        let digest = Self.firstRepeat(&digests)
        if let id, digest.map({ id.second <= $0.second }) ?? true {
            return Repeat(kind: .id, first: id.first, second: id.second)
        }
        return digest.map { Repeat(kind: .digest, first: $0.first, second: $0.second) }
    }

    private static func firstRepeat(_ entries: inout [Entry]) -> (first: Int, second: Int)? {
        entries.sort(by: <)
        var best: (first: Int, second: Int)?
        var index = 1
        while index < entries.count {
            // Sorted by value, then line: the first two of a run of equal values are the
            // value's first line and the line that repeats it first.
            if entries[index].sameValue(as: entries[index - 1]) {
                let candidate = (Int(entries[index - 1].line), Int(entries[index].line))
                if best.map({ candidate.1 < $0.second }) ?? true { best = candidate }
                while index < entries.count && entries[index].sameValue(as: entries[index - 1]) { index += 1 }
            }
            index += 1
        }
        return best
    }
}
