import Synchronization

/// Keys for ``KeyStore/importKeys(_:)``, handed over a batch at a time, so that an import
/// of a million keys never holds them all in memory.
///
/// `next()` is synchronous so that a store can pull every batch inside one database
/// transaction, and it may block while it reads and decodes. A store calls it from one
/// thread at a time. When it throws, the import fails: a store that can, stores nothing.
public protocol KeyBatchSource: Sendable {
    /// The next keys to store, or `nil` once all were handed over.
    func next() throws(TollgateError) -> [APIKey]?
}

/// Keys already in memory, as batches of at most `batchSize`.
public final class KeyArrayBatches: KeyBatchSource {
    private let keys: [APIKey]
    private let batchSize: Int
    private let start = Mutex(0)

    public init(_ keys: [APIKey], batchSize: Int = 10_000) {
        self.keys = keys
        self.batchSize = max(1, batchSize)
    }

    public func next() -> [APIKey]? {
        start.withLock { start in
            guard start < keys.count else { return nil }
            let end = min(start + batchSize, keys.count)
            defer { start = end }
            return Array(keys[start..<end])
        }
    }
}
