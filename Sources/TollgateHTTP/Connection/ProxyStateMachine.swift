/// One forwarded request's life, nested in its connection's ``ConnectionStateMachine``:
/// admission, the upstream connection, the request's body, the answer. It says when the
/// body may flow and whether a failed send may be tried again; the handler does the I/O.
struct ProxyStateMachine: Equatable {
    enum Phase: Equatable {
        /// The store is deciding the request; its body is held.
        case deciding
        /// Admitted; an upstream connection is being found or opened; the body is held.
        case connecting
        /// The head went upstream; the body follows as the upstream takes it.
        case sending
        /// The upstream's answer is being relayed.
        case answering
    }

    /// The request's number on its connection.
    let number: Int
    private(set) var phase = Phase.deciding
    /// Whether the request's body (or its head alone) has ended.
    private(set) var requestEnded = false
    /// Whether the upstream connection can take more now.
    private(set) var upstreamWritable = true
    /// Whether the request was sent again after a pooled connection failed it.
    private(set) var retried = false
    /// Whether body bytes were sent upstream (a request with a body is never sent twice).
    private(set) var sentBody = false

    init(number: Int) {
        self.number = number
    }

    /// Whether the request's body may be read and forwarded now.
    var bodyWanted: Bool { phase == .sending && upstreamWritable && !requestEnded }

    mutating func admitted() {
        if phase == .deciding { phase = .connecting }
    }

    /// The head (and any body held) went upstream on a connection.
    mutating func sent() {
        if phase == .connecting { phase = .sending }
    }

    mutating func upstreamWritabilityChanged(_ writable: Bool) {
        upstreamWritable = writable
    }

    mutating func bodySent() {
        sentBody = true
    }

    mutating func endRequest() {
        requestEnded = true
    }

    mutating func answerBegan() {
        phase = .answering
    }

    /// The upstream connection closed or failed before one byte of an answer. The request is
    /// sent once more, on a new connection, only if it can be sent again as it was (`safe`:
    /// an idempotent method, the connection was a pooled one that saw no byte of an answer),
    /// it has ended and no body went, and it was not sent again already.
    mutating func retryAfterFailure(safe: Bool) -> Bool {
        guard phase == .sending, safe, requestEnded, !sentBody, !retried else { return false }
        retried = true
        phase = .connecting
        return true
    }
}
