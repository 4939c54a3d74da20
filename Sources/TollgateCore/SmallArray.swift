/// An array whose first element is stored inline: a key's counters and per-API counts are
/// mostly one of each, and an `Array` of one costs an allocation of 64 to 144 bytes (its
/// header, the element, malloc's own) for each of a million held keys.
struct SmallArray<Element>: RandomAccessCollection, MutableCollection {
    private var head: Element?
    private var tail: [Element] = []

    init() {}

    init(_ elements: some Sequence<Element>) {
        for element in elements { append(element) }
    }

    var startIndex: Int { 0 }
    var endIndex: Int { head == nil ? 0 : 1 + tail.count }

    subscript(position: Int) -> Element {
        get { position == 0 ? head! : tail[position - 1] }
        set {
            if position == 0 {
                precondition(head != nil, "index out of range")
                head = newValue
            } else {
                tail[position - 1] = newValue
            }
        }
    }

    mutating func append(_ element: Element) {
        if head == nil { head = element } else { tail.append(element) }
    }

    mutating func removeAll() {
        head = nil
        tail = []
    }
}
