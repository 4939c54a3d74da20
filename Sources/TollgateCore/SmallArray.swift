/// An array whose first element is stored inline: a key's counters and per-API counts are
/// mostly one of each, and an `Array` of one costs an allocation of 64 to 144 bytes (its
/// header, the element, malloc's own) for each of a million held keys.
///
/// An empty first place holds ``SmallArrayElement/vacant`` rather than `nil`, since an
/// `Optional` of a struct of integers is a byte longer and padded to eight.
struct SmallArray<Element: SmallArrayElement>: RandomAccessCollection, MutableCollection {
    private var head = Element.vacant
    private var tail: [Element] = []

    init() {}

    init(_ elements: some Sequence<Element>) {
        for element in elements { append(element) }
    }

    var startIndex: Int { 0 }
    var endIndex: Int { head.isVacant ? 0 : 1 + tail.count }

    subscript(position: Int) -> Element {
        get {
            precondition(position >= 0 && position < endIndex, "index out of range")
            return position == 0 ? head : tail[position - 1]
        }
        set {
            precondition(!newValue.isVacant, "a vacant element cannot be stored")
            if position == 0 {
                precondition(!head.isVacant, "index out of range")
                head = newValue
            } else {
                tail[position - 1] = newValue
            }
        }
    }

    mutating func append(_ element: Element) {
        precondition(!element.isVacant, "a vacant element cannot be stored")
        if head.isVacant { head = element } else { tail.append(element) }
    }

    mutating func removeAll() {
        head = .vacant
        tail = []
    }
}

/// An element a ``SmallArray`` can hold: one with a value no real element has.
protocol SmallArrayElement {
    static var vacant: Self { get }
    var isVacant: Bool { get }
}

// Counts are never `Int64.min` (they start at zero; windows start at or after year 0).

extension UsageCounter: SmallArrayElement {
    static var vacant: UsageCounter { UsageCounter(windowStart: .min, used: 0) }
    var isVacant: Bool { windowStart == .min }
}

extension APIUsage: SmallArrayElement {
    static var vacant: APIUsage { APIUsage(admitted: .min) }
    var isVacant: Bool { admitted == .min }
}
