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
        /// A request decided (then forwarded upstream) from its head on, while its body may
        /// still arrive (`ended` once it has); reads follow the upstream's demand.
        case streaming(Request, ended: Bool)
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
    /// Whether a streamed request body is held (not yet admitted, or the upstream is full).
    private(set) var bodyHeld = false
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
        case .idle, .receiving, .discarding, .parked, .streaming:
            // A streamed exchange that moves no byte either way for the timeout is closed
            // too (the upstream's response timeout bounds the wait for its answer).
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
        case .receiving, .deciding, .parked, .streaming, .closed:
            keepAlive = false
            return false
        }
    }

    enum ErrorAction: Equatable {
        /// Answer the parse error; the connection closes after the answer.
        case answer
        /// A streamed request's body is malformed: end its forwarding (never as if the body
        /// were whole) and answer `400` unless its answer has begun; then close.
        case failStream
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
        case .streaming(_, ended: false):
            // The error is in this request's body: it is answered now, and nothing more is read.
            phase = .deciding
            bodyHeld = false
            return .failStream
        case .deciding, .parked, .streaming, .closed:
            // The error is in a request after the one under way, which is answered first.
            return .none
        }
    }

    // MARK: Requests

    enum HeadAction {
        case wait
        /// Answer at once (a request body no route takes); then the body is read away.
        case answerNow(Request)
        /// Decide now and stream the body (an upstream route); the body is held until
        /// ``bodyWanted(_:)`` lets it flow.
        case decideNow(Request)
        case ignore
    }

    /// A request head arrived. `streams` when its route forwards the body upstream.
    ///
    /// A streamed request without a body has ended with its head (the decoder's end follows
    /// in the same read): an answer decided at once (a refusal) then keeps the connection,
    /// where one that began before a body ended would close it.
    mutating func headReceived(_ request: Request, keepAlive: Bool, hasBody: Bool, streams: Bool = false) -> HeadAction {
        guard case .idle = phase else { return .ignore }
        self.keepAlive = keepAlive
        if streams {
            phase = .streaming(request, ended: !hasBody)
            bodyHeld = hasBody
            return .decideNow(request)
        }
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
        /// A streamed request's body has ended: send the end upstream.
        case forwardEnd
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
        case .streaming(let request, ended: false):
            // Nothing more to hold: reads from here on are for the next request, which
            // NIO's pipelining handler keeps until this one is answered.
            phase = .streaming(request, ended: true)
            bodyHeld = false
            return .forwardEnd
        case .idle, .deciding, .parked, .streaming, .closed:
            return .ignore
        }
    }

    // MARK: Streaming

    /// Whether a streamed request's body may flow: `false` until it is admitted and its
    /// upstream connected, and while the upstream cannot take more. Returns whether a held
    /// read is to be passed on now.
    mutating func bodyWanted(_ wanted: Bool) -> Bool {
        bodyHeld = !wanted
        guard wanted, readPending, isWritable, !isClosed else { return false }
        readPending = false
        return true
    }

    /// Bytes moved in either direction of a streamed exchange: the idle clock restarts.
    mutating func streamed(now: Instant) {
        lastActivity = now
    }

    /// A streamed answer's head is about to be written: whether it must say
    /// `connection: close`. An answer that begins before the request has ended closes the
    /// connection after it (the rest of the request body is not worth waiting for).
    mutating func willStreamAnswer() -> Bool {
        if case .streaming(_, ended: false) = phase { keepAlive = false }
        return !keepAlive
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
        case .streaming(_, ended: false):
            // Answered before the body ended (refused, or the upstream finished first):
            // the rest is read away, then the connection closes.
            lastActivity = now
            keepAlive = false
            bodyHeld = false
            phase = .discarding
            return .close(outputOnly: true)
        case .idle, .receiving, .deciding, .parked, .streaming:
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

    /// A body being read away before its request is decided (a forward-auth question's)
    /// outgrew its bound: the refusal is answered now, the rest of the body is read away,
    /// then the connection closes.
    mutating func bodyRefused() {
        guard case .receiving = phase else { return }
        keepAlive = false
        phase = .discarding
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
        let read = readPending && !bodyHeld
        if read { readPending = false }
        if case .parked(let request) = phase {
            phase = .deciding
            return .resume(request, read: read)
        }
        return read ? .read : .none
    }

    /// Whether a read may go to the socket now; a held read is passed on when it drains.
    mutating func readRequested() -> Bool {
        if isClosed { return false }
        guard isWritable, !bodyHeld else {
            readPending = true
            return false
        }
        return true
    }
}
