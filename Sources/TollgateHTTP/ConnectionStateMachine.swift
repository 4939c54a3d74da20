import NIOCore

/// A point in time the connection state machine can compute deadlines with. The machine
/// never reads a clock: every event brings its own `now`, so tests drive it with instants
/// they choose, and the handler with its event loop's clock (virtual on `EmbeddedEventLoop`).
public protocol ConnectionInstant: Comparable, Sendable {
    func adding(_ amount: TimeAmount) -> Self
}

extension NIODeadline: ConnectionInstant {
    public func adding(_ amount: TimeAmount) -> NIODeadline { self + amount }
}

/// One data-plane connection's life, without I/O: keep-alive, the request in progress,
/// how deep pipelined answers nest, the idle deadline, and backpressure. Each event
/// returns the action the handler must carry out, as Hummingbird's
/// `HTTPConnectionStateHandler` does, so every path can be tested without sockets.
///
/// Backpressure: while the socket cannot take more (the channel is not writable), a
/// complete request is parked instead of answered and reads are held, so a client that
/// sends without reading fills its own socket buffers, not the server's memory.
struct ConnectionStateMachine<Instant: ConnectionInstant, Request> {
    enum Phase {
        /// Waiting for a request head.
        case idle
        /// Head received, waiting for its end.
        case receiving(Request)
        /// Answered early (a request with a body); the rest is read away, then the connection closes.
        case discarding
        /// The request is with the store (or being answered).
        case deciding
        /// A complete request waiting for the socket to drain before it is answered.
        case parked(Request)
        case closed
    }

    /// Answers written inside other answers' writes: each answer written at once makes
    /// NIO's pipelining handler deliver the next buffered request inside that write.
    static var maximumNesting: Int { 16 }

    private(set) var phase = Phase.idle
    private(set) var keepAlive = true
    private(set) var isWritable = true
    /// A read asked for while reads are held.
    private(set) var readPending = false
    private var nesting = 0
    /// When the connection last finished an answer or became active: the idle clock.
    private var lastActivity: Instant
    let idleTimeout: TimeAmount

    init(idleTimeout: TimeAmount, now: Instant) {
        self.idleTimeout = idleTimeout
        self.lastActivity = now
    }

    var isClosed: Bool {
        if case .closed = phase { return true }
        return false
    }

    // MARK: Connection

    /// The connection is up: the first idle deadline to arm.
    mutating func activated(now: Instant) -> Instant {
        lastActivity = now
        return now.adding(idleTimeout)
    }

    mutating func inactive() {
        phase = .closed
    }

    enum TimerAction: Equatable {
        case none
        case close
        case rearm(Instant)
    }

    /// The idle timer fired. One timer per connection, re-armed lazily: a request does
    /// not reschedule it; on firing it checks whether the connection has idled long enough.
    mutating func timerFired(now: Instant) -> TimerAction {
        switch phase {
        case .closed:
            return .none
        case .idle, .receiving, .discarding, .parked:
            // A request head still incomplete counts as idle (its header fields must arrive
            // within the timeout), as does a refused body still arriving and an answer the
            // client does not read.
            let deadline = lastActivity.adding(idleTimeout)
            if now >= deadline {
                phase = .closed
                return .close
            }
            return .rearm(deadline)
        case .deciding:
            // The store bounds its own wait (it answers 503 past its timeout).
            return .rearm(now.adding(idleTimeout))
        }
    }

    /// The client closed its side: close now unless an answer is still owed.
    mutating func inputClosed() -> Bool {
        switch phase {
        case .idle, .discarding:
            phase = .closed
            return true
        case .receiving, .deciding, .parked, .closed:
            keepAlive = false
            return false
        }
    }

    enum ErrorAction: Equatable {
        /// Answer the parse error; the connection closes after the answer.
        case answer
        case close
        case none
    }

    /// The decoder failed (it stops after a parse error).
    mutating func parseFailed() -> ErrorAction {
        keepAlive = false
        switch phase {
        case .idle: return .answer
        case .receiving:
            // Half a request, then garbage: no answer is owed for a request never completed.
            phase = .closed
            return .close
        case .discarding:
            phase = .closed
            return .close
        case .deciding, .parked, .closed:
            return .none
        }
    }

    // MARK: Requests

    enum HeadAction {
        case wait
        /// Answer at once (a request body no route takes); then the body is read away.
        case answerNow(Request)
        case ignore
    }

    mutating func headReceived(_ request: Request, keepAlive: Bool, hasBody: Bool) -> HeadAction {
        guard case .idle = phase else { return .ignore }
        self.keepAlive = keepAlive
        if hasBody {
            self.keepAlive = false
            phase = .discarding
            return .answerNow(request)
        }
        phase = .receiving(request)
        return .wait
    }

    enum EndAction {
        case handle(Request)
        /// Deep in a pipelined burst: handle it from a fresh stack (the next loop tick).
        case handleLater(Request)
        /// The socket is full: the request waits for ``writabilityChanged(_:)``.
        case park
        /// The refused body has ended; the answer went out before it.
        case close
        case ignore
    }

    mutating func endReceived() -> EndAction {
        switch phase {
        case .receiving(let request):
            if !isWritable {
                phase = .parked(request)
                return .park
            }
            phase = .deciding
            return nesting >= Self.maximumNesting ? .handleLater(request) : .handle(request)
        case .discarding:
            phase = .closed
            return .close
        case .idle, .deciding, .parked, .closed:
            return .ignore
        }
    }

    // MARK: Answers

    enum WriteAction: Equatable {
        /// Write the answer; the connection stays open and is idle from now on.
        case keepOpen
        /// Write the answer, then close: `outputOnly` while a refused body still arrives
        /// (closing both ways would make the kernel reset the connection, which can destroy
        /// the answer before the client reads it).
        case close(outputOnly: Bool)
        /// The connection is closed: write nothing.
        case drop
    }

    /// An answer is about to be written. With `.keepOpen` the handler must call
    /// ``answerWritten()`` once the write call returns (it may re-enter with the next request).
    mutating func willWriteAnswer(now: Instant) -> WriteAction {
        switch phase {
        case .closed:
            return .drop
        case .discarding:
            lastActivity = now
            return .close(outputOnly: true)
        case .idle, .receiving, .deciding, .parked:
            lastActivity = now
            if keepAlive {
                phase = .idle
                nesting += 1
                return .keepOpen
            }
            phase = .closed
            return .close(outputOnly: false)
        }
    }

    mutating func answerWritten() {
        nesting -= 1
    }

    /// Whether a request deferred with `.handleLater` is still to be handled.
    var canHandleDeferred: Bool { !isClosed }

    /// The connection will close after the answer under way (a protocol error's answer).
    mutating func closeAfterAnswer() {
        keepAlive = false
    }

    // MARK: Backpressure

    enum WritabilityAction {
        case none
        /// Handle the parked request, and pass on a held read if `read`.
        case resume(Request, read: Bool)
        case read
    }

    mutating func writabilityChanged(_ isWritable: Bool) -> WritabilityAction {
        self.isWritable = isWritable
        guard isWritable else { return .none }
        let read = readPending
        readPending = false
        if case .parked(let request) = phase {
            phase = .deciding
            return .resume(request, read: read)
        }
        return read ? .read : .none
    }

    /// Whether a read may go to the socket now; a held read is passed on when it drains.
    mutating func readRequested() -> Bool {
        if isClosed { return false }
        guard isWritable else {
            readPending = true
            return false
        }
        return true
    }
}
