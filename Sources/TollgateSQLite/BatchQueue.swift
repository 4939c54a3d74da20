import NIOCore

/// A request waiting in a ``BatchQueue``: when it came, so that it is answered `503` once it
/// has waited longer than the operation timeout.
protocol Waiting {
    var enqueuedAt: NIODeadline { get }
}

/// Requests waiting for one of the store's threads (the writer's commits, the reader's key
/// lookups), served a batch at a time: every request that arrives while a batch is in flight
/// joins the next one, so a flood costs one transaction per batch rather than one per request.
///
/// It keeps what the watchdog needs to answer `503` in time, whatever the thread is doing:
/// when the batch in flight started, and when each pending request came. Not thread-safe:
/// its owner keeps it under a lock.
struct BatchQueue<Item: Waiting> {
    /// Waiting for the next batch, oldest first.
    private(set) var pending: [Item] = []
    /// The batch in flight, until it is finished or expired.
    private(set) var inFlight: [Item] = []
    /// When the batch in flight started; `nil` once its requests are answered.
    private(set) var inFlightSince: NIODeadline?
    /// The number of the last batch taken: the one in flight, if any.
    private(set) var number: Int64 = 0
    /// The number the next batch will have.
    var nextNumber: Int64 { number + 1 }
    /// Whether the thread is taking batches. Whoever sets it starts the thread, so that
    /// there is never more than one and never none while work waits.
    private(set) var isRunning = false

    /// Notes work for the thread.
    /// - Returns: whether the caller must start the thread (it is not running).
    mutating func wake() -> Bool {
        defer { isRunning = true }
        return !isRunning
    }

    /// Queues `item` for the next batch.
    /// - Returns: whether the caller must start the thread (see ``wake()``).
    mutating func append(_ item: Item) -> Bool {
        pending.append(item)
        return wake()
    }

    /// The thread stopped (nothing is left, or it failed): the next request starts it again.
    mutating func stop() {
        isRunning = false
    }

    /// Puts every pending item in flight as the next batch (``nextNumber``), started `now`.
    /// - Returns: the batch's number, for ``finish(_:)``.
    mutating func startBatch(at now: NIODeadline) -> Int64 {
        number += 1
        isRunning = true
        // Swap rather than copy, so that neither array is reallocated per batch.
        swap(&inFlight, &pending)
        pending.removeAll(keepingCapacity: true)
        inFlightSince = now
        return number
    }

    /// Ends batch `number`.
    /// - Returns: its items, or none if the watchdog has answered them meanwhile (they are
    ///   not answered again).
    mutating func finish(_ number: Int64) -> [Item] {
        guard self.number == number else { return [] }
        inFlightSince = nil
        let items = inFlight
        inFlight = []
        return items
    }

    /// Takes the requests that have waited longer than `bound`: the batch in flight if it
    /// started before `now - bound`, and the pending requests that came before then.
    /// - Returns: those requests, to be answered `503`, and whether the thread is behind
    ///   (either of the two happened).
    mutating func expire(olderThan bound: TimeAmount, now: NIODeadline) -> (expired: [Item], stalled: Bool) {
        var expired: [Item] = []
        var stalled = false
        if let since = inFlightSince, since + bound <= now {
            stalled = true
            expired = finish(number)
        }
        let late = pending.prefix { $0.enqueuedAt + bound <= now }.count
        if late > 0 {
            expired += pending[..<late]
            pending.removeFirst(late)
            stalled = true
        }
        return (expired, stalled)
    }
}
