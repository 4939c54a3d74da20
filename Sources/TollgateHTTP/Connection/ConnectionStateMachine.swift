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

/// One data-plane connection's life, without I/O: which bytes are parsed when, the order
/// answers leave in, keep-alive, the idle deadline, backpressure, and the forwarding of a
/// request to an upstream (``ProxyStateMachine``, nested while one is under way). Each event
/// returns the action the handler must carry out, as Hummingbird's
/// `HTTPConnectionStateHandler` and async-http-client's `HTTP1ConnectionStateMachine` do, so
/// that every path is tested without sockets.
///
/// **Pipelining.** Requests are numbered as their heads arrive and answered in that order.
/// Requests without a body are decided as they come, up to ``maximumOwed`` at once, however
/// the store answers them (a cached key at once, an unknown one after a lookup). A request
/// whose body is forwarded begins only once every earlier answer is written, and nothing after
/// it is parsed until its own answer is done, so that a streamed answer never waits behind a
/// small one nor a small one behind a stream.
///
/// **Backpressure.** While the socket cannot take more (the channel is not writable), no
/// request is parsed and no read is passed on, so a client that sends without reading fills
/// its own socket buffers, not the server's memory: at most ``maximumOwed`` answers are held.
struct ConnectionStateMachine<Instant: ConnectionInstant> {
    /// What the bytes after the last head are.
    enum Reading: Equatable {
        /// Request heads (one may be half read): parse on.
        case heads
        /// The body of request `number`, read and dropped; decided at its end (a forward-auth
        /// question's body), or already refused (`refused`: its answer went at the head).
        case dropBody(number: Int, refused: Bool)
        /// The body of request `number`, forwarded to its upstream.
        case forwardBody(number: Int)
        /// Nothing more is parsed on this connection: it closes once the answers owed are written.
        case stopped
        case closed
    }

    /// How many answers may be owed at once before parsing pauses.
    static var maximumOwed: Int { 32 }

    private(set) var reading = Reading.heads
    /// The number the next request head gets.
    private(set) var nextRequest = 0
    /// The number of the next answer to write.
    private(set) var nextAnswer = 0
    /// The forwarded request under way, if any (its number is ``ProxyStateMachine/number``).
    private(set) var proxy: ProxyStateMachine?
    /// A streamed request's head that waits for earlier answers before it begins.
    private(set) var waitingStream: Int?
    private(set) var isWritable = true
    /// A read asked for while reads are held.
    private(set) var readPending = false
    /// Set once the connection will close after the answers owed: a request said so, or a
    /// refusal closes it.
    private(set) var closing = false
    /// Whether the close, when it comes, is of the output alone: a refused body is still
    /// arriving (closing both ways would make the kernel reset the connection, which can
    /// destroy the answer before the client reads it).
    private(set) var outputOnly = false
    /// When the connection last moved: an answer written, bytes streamed, or it became active.
    private var lastActivity: Instant
    let idleTimeout: TimeAmount

    init(idleTimeout: TimeAmount, now: Instant) {
        self.idleTimeout = idleTimeout
        self.lastActivity = now
    }

    var isClosed: Bool { reading == .closed }

    /// Answers owed: requests whose heads arrived and whose answers are not yet written.
    var owed: Int { nextRequest - nextAnswer }

    // MARK: Connection

    /// The connection is up: the first idle deadline to arm.
    mutating func activated(now: Instant) -> Instant {
        lastActivity = now
        return now.adding(idleTimeout)
    }

    mutating func inactive() {
        reading = .closed
        proxy = nil
    }

    /// Whether the parser may run now over bytes already read.
    var mayParse: Bool {
        guard isWritable, waitingStream == nil else { return false }
        switch reading {
        case .heads: return owed < Self.maximumOwed && proxy == nil
        case .dropBody: return true
        case .forwardBody: return proxy?.bodyWanted ?? false
        case .stopped, .closed: return false
        }
    }

    /// Whether a read may go to the socket now; a held read is passed on once it may.
    mutating func readRequested() -> Bool {
        if isClosed { return false }
        let may: Bool
        switch reading {
        case .heads: may = mayParse
        case .dropBody: may = true
        case .forwardBody: may = mayParse
        // After the last request the client's close is still worth hearing, and bytes
        // that follow are dropped.
        case .stopped: may = isWritable
        case .closed: may = false
        }
        if !may { readPending = true }
        return may
    }

    enum TimerAction: Equatable {
        case none
        case close
        case rearm(Instant)
    }

    /// The idle timer fired. One timer per connection, re-armed lazily: a request does not
    /// reschedule it; on firing it checks whether the connection has idled long enough.
    ///
    /// Idle is: no request owed (a head still incomplete counts: its fields must arrive
    /// within the timeout, which closes slowloris), a client that does not read its answers,
    /// and a forwarding that moves no byte either way (the upstream's response timeout bounds
    /// the wait for its answer). Requests with the store are not idle: it bounds its own wait.
    mutating func timerFired(now: Instant) -> TimerAction {
        if isClosed { return .none }
        let withTheStore = owed > 0 && proxy == nil && isWritable && !outputOnly
        if withTheStore { return .rearm(now.adding(idleTimeout)) }
        let deadline = lastActivity.adding(idleTimeout)
        if now >= deadline {
            inactive()
            return .close
        }
        return .rearm(deadline)
    }

    /// The client closed its side: close now unless an answer is still owed (then it
    /// closes once they are written).
    mutating func inputClosed() -> Bool {
        if owed == 0 {
            inactive()
            return true
        }
        closing = true
        outputOnly = false
        if case .forwardBody = reading { return false }
        reading = .stopped
        return false
    }

    /// The server is shutting down: no request after those owed is read. Returns whether
    /// the connection closes now (nothing is owed, or only a head half read).
    mutating func quiesce() -> Bool {
        closing = true
        if owed == 0 {
            inactive()
            return true
        }
        if reading == .heads { reading = .stopped }
        return false
    }

    // MARK: Requests

    /// What the handler does with a head, by what its route makes of it.
    enum HeadKind: Equatable {
        /// Decided at its end: no body, or a body read and dropped first (`dropsBody`).
        case decidedAtEnd(dropsBody: Bool)
        /// Refused at once for a body no route takes (or a refusal from its head alone,
        /// with a body): the body is read away, then the connection closes.
        case refusedWithBody
        /// Forwarded upstream, its body streamed. One without a body begins at its end
        /// (which follows its head at once), so that a refusal finds it whole.
        case streamed(hasBody: Bool)
    }

    enum HeadAction: Equatable {
        /// Parse on (to the request's end).
        case parse(number: Int)
        /// Answer request `number` now; its body is read away after, then the connection closes.
        case refuse(number: Int)
        /// Begin forwarding request `number` now (decide it; its body is held until wanted).
        case beginStream(number: Int)
        /// Request `number` is forwarded once the earlier answers are written
        /// (``answerWritten(now:)`` says when).
        case waitForEarlierAnswers(number: Int)
    }

    /// A request head arrived. `keepAlive`: whether it lets the connection go on.
    mutating func headReceived(_ kind: HeadKind, keepAlive: Bool) -> HeadAction {
        let number = nextRequest
        nextRequest += 1
        if !keepAlive { closing = true }
        switch kind {
        case .decidedAtEnd(let dropsBody):
            if dropsBody { reading = .dropBody(number: number, refused: false) }
            return .parse(number: number)
        case .refusedWithBody:
            closing = true
            outputOnly = true
            reading = .dropBody(number: number, refused: true)
            return .refuse(number: number)
        case .streamed(let hasBody):
            reading = .forwardBody(number: number)
            proxy = ProxyStateMachine(number: number)
            if owed > 1 {
                waitingStream = number
                return .waitForEarlierAnswers(number: number)
            }
            return hasBody ? .beginStream(number: number) : .parse(number: number)
        }
    }

    enum EndAction: Equatable {
        /// Decide request `number` (its answer, when ready, goes in its turn).
        case decide(number: Int)
        /// The forwarded request's body has ended: send its end upstream.
        case forwardEnd
        /// A forwarded request without a body has ended with its head: forward it now.
        case beginStream(number: Int)
        /// A refused body has ended: the connection closes once its answer is written.
        case closeWhenWritten
        case none
    }

    /// A request's end arrived (for one without a body, just after its head).
    mutating func endReceived() -> EndAction {
        switch reading {
        case .heads:
            let number = nextRequest - 1
            if closing { reading = .stopped }
            return .decide(number: number)
        case .dropBody(let number, let refused):
            reading = closing ? .stopped : .heads
            if refused {
                outputOnly = false
                return .closeWhenWritten
            }
            return .decide(number: number)
        case .forwardBody(let number):
            // Nothing after a forwarded request is parsed before its answer is done.
            reading = closing ? .stopped : .heads
            // A request with a body began at its head (its body flows only once it is sent).
            let began = proxy?.phase != .deciding
            proxy?.endRequest()
            if waitingStream == number { return .none }
            return began ? .forwardEnd : .beginStream(number: number)
        case .stopped, .closed:
            return .none
        }
    }

    enum ErrorAction: Equatable {
        /// Answer the parse error as request `number` (`400`, or `431` for a head too large);
        /// the connection closes after the answers owed.
        case answer(number: Int)
        /// A forwarded request's body is malformed: end its forwarding (never as if the body
        /// were whole) and answer `400` unless its answer has begun; then close.
        case failStream
        /// A body read away (a question's) is malformed: answer its request `number` with
        /// `400`; then close.
        case refuseBody(number: Int)
        case close
        case none
    }

    /// The parser failed (it reads nothing more after an error).
    mutating func parseFailed() -> ErrorAction {
        closing = true
        let previous = reading
        reading = .stopped
        switch previous {
        case .heads:
            let number = nextRequest
            nextRequest += 1
            return .answer(number: number)
        case .dropBody(let number, let refused):
            outputOnly = false
            if refused {
                if owed == 0 {
                    inactive()
                    return .close
                }
                return .none
            }
            return .refuseBody(number: number)
        case .forwardBody:
            return .failStream
        case .stopped, .closed:
            reading = previous
            return .none
        }
    }

    /// The message just parsed switches protocols (CONNECT, an `Upgrade`): nothing after
    /// it is HTTP, so nothing more is parsed; its answer closes the connection.
    mutating func upgraded() {
        closing = true
        if reading == .heads { reading = .stopped }
    }

    /// A refusal that closes the connection after it (a protocol error's answer, a body too
    /// large): nothing more is parsed.
    mutating func closeAfterAnswers() {
        closing = true
        if reading == .heads { reading = .stopped }
    }

    /// A body being read away before its request is decided (a forward-auth question's)
    /// outgrew its bound: the refusal goes now, the rest is read away, then the connection closes.
    mutating func bodyRefused() -> Int? {
        guard case .dropBody(let number, refused: false) = reading else { return nil }
        closing = true
        outputOnly = true
        reading = .dropBody(number: number, refused: true)
        return number
    }

    // MARK: Answers

    enum WriteAction: Equatable {
        /// Write the answer; the connection stays open.
        case keepOpen
        /// Write the answer, then close; `outputOnly` while a refused body still arrives.
        case close(outputOnly: Bool)
        /// The connection is closed: write nothing.
        case drop
    }

    /// Whether answer `number` may be written now: it is the next in order.
    func mayWrite(_ number: Int) -> Bool { number == nextAnswer && !isClosed }

    /// The next answer in order was written (whole, or a streamed one's end): what to do
    /// with the connection after it.
    mutating func answerWritten(now: Instant) -> WriteAction {
        if isClosed { return .drop }
        lastActivity = now
        nextAnswer += 1
        if proxy?.number == nextAnswer - 1 { proxy = nil }
        if owed == 0 && closing && reading != .heads {
            if outputOnly { return .close(outputOnly: true) }
            inactive()
            return .close(outputOnly: false)
        }
        return .keepOpen
    }

    /// Whether the next request is a streamed one that waited for this answer: begin it.
    mutating func streamMayBegin() -> Int? {
        guard let number = waitingStream, number == nextAnswer else { return nil }
        waitingStream = nil
        return number
    }

    /// The answer to the forwarded request is about to begin (the upstream's, or a refusal
    /// in its place): whether it must say `connection: close`. An answer that begins before
    /// its request has ended closes the connection after it; the rest of the body is read
    /// away first (it is not worth waiting for, nor forwarding).
    mutating func answerBegins(now: Instant) -> Bool {
        lastActivity = now
        if case .forwardBody(let number) = reading {
            closing = true
            outputOnly = true
            reading = .dropBody(number: number, refused: true)
        }
        return closing
    }

    // MARK: Streaming

    /// Bytes moved in either direction of a forwarding: the idle clock restarts.
    mutating func streamed(now: Instant) {
        lastActivity = now
    }

    /// The forwarding's state changed (``ProxyStateMachine``); returns whether a held read is
    /// to be passed on now.
    mutating func updateProxy(_ change: (inout ProxyStateMachine) -> Void) -> Bool {
        guard proxy != nil else { return false }
        change(&proxy!)
        return takeHeldRead()
    }

    /// A forwarding that ends before its answer (refused, failed): the connection carries on
    /// with the refusal written in its place.
    mutating func proxyEnded() {
        proxy = nil
    }

    // MARK: Backpressure

    /// The socket's writability changed: returns whether a held read is to be passed on and
    /// parsing resumed.
    mutating func writabilityChanged(_ isWritable: Bool, now: Instant) -> Bool {
        self.isWritable = isWritable
        if isWritable { lastActivity = now }
        return takeHeldRead()
    }

    /// Whether a read held earlier is to be passed on now.
    mutating func takeHeldRead() -> Bool {
        guard readPending, !isClosed, mayParse || reading == .stopped else { return false }
        readPending = false
        return true
    }
}
