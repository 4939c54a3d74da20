/// Bounds the decoder enforces so that a broken or hostile server cannot make the client
/// allocate unbounded memory or recurse without end.
///
/// Each limit is checked as soon as the header announcing a size arrives, before any
/// payload is buffered, and a breach fails the connection with ``RESPError/Code/protocolError``.
public struct RESPDecoderLimits: Sendable, Hashable {
    /// Longest bulk string payload accepted. Redis itself allows 512 MiB, but a client that
    /// stores small keys has no reason to buffer that much on a bad length header.
    public var maxBulkLength: Int
    /// Most elements in one array, set, push or map (a map counts its pairs).
    public var maxAggregateCount: Int
    /// Deepest nesting of aggregates.
    public var maxDepth: Int
    /// Longest header or simple line (simple strings, errors, numbers).
    public var maxLineLength: Int

    /// Defaults: 64 MiB bulk strings, 1 Mi elements per aggregate, depth 32, 64 KiB lines.
    public init(
        maxBulkLength: Int = 64 * 1024 * 1024,
        maxAggregateCount: Int = 1 << 20,
        maxDepth: Int = 32,
        maxLineLength: Int = 64 * 1024
    ) {
        self.maxBulkLength = maxBulkLength
        self.maxAggregateCount = maxAggregateCount
        self.maxDepth = maxDepth
        self.maxLineLength = maxLineLength
    }
}
