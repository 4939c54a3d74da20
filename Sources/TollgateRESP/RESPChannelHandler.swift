import Logging
import NIOCore
import Synchronization

/// What the pool needs to know of a connection from any thread.
final class RESPConnectionHealth: Sendable {
    /// A command timed out and its reply has not come yet.
    let stalled = Atomic<Bool>(false)
}

/// The single channel handler of a RESP connection: it encodes commands, decodes replies and
/// matches them to their promises through one FIFO queue.
///
/// Redis answers strictly in order, so a queue of promises is all the bookkeeping needed
/// for any amount of pipelining. Timeouts use the same property: only the oldest command's
/// deadline can expire first, so one timer, re-armed lazily, covers the whole queue instead of
/// one scheduled task per command.
///
/// A command that times out fails its promise, but stays in the queue: Redis may still run
/// it (a stopped or busy server reads its socket later), and its reply, when it comes, must
/// neither be matched to a later command nor be lost, since the caller may have to undo
/// what it did (``RESPConnection/send(_:lateReply:)``). From the first timeout until every
/// overdue reply has arrived the connection is *stalled*: the pool sends it nothing new and
/// connects anew. A connection still stalled after ``RESPConfiguration/lateReplyWindow`` is
/// closed: the server or the network is gone.
///
/// Everything here runs on the channel's event loop; ``RESPConnection`` gets there.
final class RESPChannelHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    typealias LateReply = @Sendable (RESPValue) -> Void

    private struct Pending {
        let promise: EventLoopPromise<RESPValue>
        let deadline: NIODeadline
        /// Receives the reply if it arrives after the promise failed with a timeout.
        let lateReply: LateReply?
    }

    private enum State {
        /// Before `handlerAdded`.
        case idle
        /// Added to a pipeline. Sending is allowed as soon as the channel is connected, which
        /// can be before `channelActive` reaches us (connect promises complete first).
        case active(ChannelHandlerContext)
        case closed(RESPError)
    }

    private var state: State = .idle
    private var parser: RESPParser
    private var cumulation: ByteBuffer?
    private var queue = CircularBuffer<Pending>(initialCapacity: 16)
    private var outbound: ByteBuffer
    private var timer: Scheduled<Void>?
    private var timerDeadline = NIODeadline.distantFuture
    /// How many commands at the head of the queue have timed out (always a prefix: they
    /// time out oldest first); their replies go to their `lateReply`.
    private var overdue = 0
    /// Close once the queue is empty: the pool has replaced this connection.
    private var closeWhenIdle = false
    private let commandTimeout: TimeAmount
    private let lateReplyWindow: TimeAmount
    private let logger: Logger
    /// Whether the connection is stalled, readable from any thread.
    let health = RESPConnectionHealth()
    /// Called once each time the connection becomes stalled (on the event loop).
    var onStall: (() -> Void)?
    /// Receives RESP3 push messages, and in pub/sub mode also RESP2 `message`/`pmessage` arrays.
    var onPush: ((RESPValue) -> Void)?
    /// In pub/sub mode, subscription confirmations are matched to commands and messages go to
    /// `onPush`, whatever the protocol version.
    var pubSubMode = false

    init(commandTimeout: TimeAmount, lateReplyWindow: TimeAmount = .seconds(30), limits: RESPDecoderLimits, logger: Logger) {
        self.commandTimeout = commandTimeout
        self.lateReplyWindow = lateReplyWindow
        self.parser = RESPParser(limits: limits)
        self.logger = logger
        self.outbound = ByteBuffer()
    }

    // MARK: Channel events

    func handlerAdded(context: ChannelHandlerContext) {
        self.outbound = context.channel.allocator.buffer(capacity: 256)
        if case .idle = self.state { self.state = .active(context) }
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.fail(RESPError(.connectionClosed, "connection closed"), close: false)
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.fail(RESPError(.connectionClosed, "handler removed"), close: false)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.logger.debug("redis connection error", metadata: ["error": "\(error)"])
        self.fail(RESPError(.connectionClosed, "connection error: \(error)"), close: true)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var incoming = self.unwrapInboundIn(data)
        var buffer: ByteBuffer
        if var existing = self.cumulation.take() {
            existing.writeBuffer(&incoming)
            buffer = existing
        } else {
            buffer = incoming
        }
        while case .active = self.state {
            let value: RESPValue
            do {
                guard let v = try self.parser.next(from: &buffer) else { break }
                value = v
            } catch {
                self.logger.warning("redis protocol error", metadata: ["error": "\(error.message)"])
                self.fail(error, close: true)
                return
            }
            self.deliver(value)
        }
        if case .active = self.state, buffer.readableBytes > 0 {
            if buffer.readerIndex > 4096 { buffer.discardReadBytes() }
            self.cumulation = buffer
        }
    }

    private func deliver(_ value: RESPValue) {
        if case .push = value, let onPush = self.onPush {
            if self.pubSubMode, Self.isSubscriptionReply(value), !self.queue.isEmpty {
                self.complete(with: value)
            } else {
                onPush(value)
            }
            return
        }
        if self.pubSubMode, case .array = value, let onPush = self.onPush, !Self.isSubscriptionReply(value) {
            onPush(value)
            return
        }
        if case .push = value {
            self.logger.trace("dropping push message without a handler")
            return
        }
        guard !self.queue.isEmpty else {
            self.fail(RESPError(.protocolError, "reply without a pending command"), close: true)
            return
        }
        self.complete(with: value)
    }

    private func complete(with value: RESPValue) {
        let pending = self.queue.removeFirst()
        if self.overdue > 0 {
            self.overdue -= 1
            if self.overdue == 0 {
                self.health.stalled.store(false, ordering: .relaxed)
                self.logger.notice("redis answered the commands that had timed out")
            }
            pending.lateReply?(value)
        } else if case .error(let message) = value {
            pending.promise.fail(RESPError.server(message))
        } else {
            pending.promise.succeed(value)
        }
        if self.closeWhenIdle, self.queue.isEmpty, self.isActive {
            self.fail(RESPError(.shutdown, "replaced connection closed once answered"), close: true)
        }
    }

    private static func isSubscriptionReply(_ value: RESPValue) -> Bool {
        guard let kind = value.array?.first?.string else { return false }
        switch kind {
        case "subscribe", "unsubscribe", "psubscribe", "punsubscribe", "ssubscribe", "sunsubscribe", "pong":
            return true
        default:
            return false
        }
    }

    // MARK: Sending

    /// Enqueues and writes one command. Must be called on the event loop.
    func send(
        _ command: RESPCommand, timeout: TimeAmount? = nil, promise: EventLoopPromise<RESPValue>,
        lateReply: LateReply? = nil
    ) {
        guard case .active(let context) = self.state else {
            promise.fail(self.closedError)
            return
        }
        self.outbound.clear()
        command.encode(into: &self.outbound)
        self.enqueue(promise, timeout: timeout, lateReply: lateReply, eventLoop: context.eventLoop)
        context.writeAndFlush(self.wrapOutboundOut(self.outbound), promise: nil)
    }

    /// Enqueues several commands and writes them with a single write and flush.
    func send(batch commands: [RESPCommand], timeout: TimeAmount? = nil, promises: [EventLoopPromise<RESPValue>]) {
        precondition(commands.count == promises.count)
        guard case .active(let context) = self.state else {
            let error = self.closedError
            for p in promises { p.fail(error) }
            return
        }
        guard !commands.isEmpty else { return }
        self.outbound.clear()
        for (command, promise) in zip(commands, promises) {
            command.encode(into: &self.outbound)
            self.enqueue(promise, timeout: timeout, lateReply: nil, eventLoop: context.eventLoop)
        }
        context.writeAndFlush(self.wrapOutboundOut(self.outbound), promise: nil)
    }

    /// Fails everything queued with `error` and closes the channel.
    func close(with error: RESPError) {
        self.fail(error, close: true)
    }

    /// Closes the channel once every command sent has been answered (at once if none is
    /// waiting), or when the late-reply window of a stalled connection ends.
    func closeWhenAnswered() {
        guard case .active = self.state else { return }
        if self.queue.isEmpty {
            self.fail(RESPError(.shutdown, "replaced connection closed"), close: true)
        } else {
            self.closeWhenIdle = true
        }
    }

    var isActive: Bool {
        if case .active = self.state { return true }
        return false
    }

    var inFlight: Int { self.queue.count }

    private var closedError: RESPError {
        switch self.state {
        case .closed(let e) where e.code == .shutdown: return e
        default: return RESPError(.connectionClosed, "connection is closed")
        }
    }

    private func enqueue(
        _ promise: EventLoopPromise<RESPValue>, timeout: TimeAmount?, lateReply: LateReply?, eventLoop: any EventLoop
    ) {
        let deadline = eventLoop.now + (timeout ?? self.commandTimeout)
        self.queue.append(Pending(promise: promise, deadline: deadline, lateReply: lateReply))
        if self.timer == nil {
            self.armTimer(at: deadline, eventLoop: eventLoop)
        } else if deadline < self.timerDeadline {
            // Armed for the end of a stall's late-reply window, later than this deadline.
            self.timer?.cancel()
            self.armTimer(at: deadline, eventLoop: eventLoop)
        }
    }

    // MARK: Timeouts

    private func armTimer(at deadline: NIODeadline, eventLoop: any EventLoop) {
        self.timerDeadline = deadline
        let loopBound = NIOLoopBound(self, eventLoop: eventLoop)
        self.timer = eventLoop.scheduleTask(deadline: deadline) {
            loopBound.value.timerFired()
        }
    }

    /// Fails every command past its deadline (oldest first, so the overdue ones stay a prefix
    /// of the queue), closes a connection stalled beyond the late-reply window, and re-arms
    /// for whichever comes next.
    private func timerFired() {
        self.timer = nil
        guard case .active(let context) = self.state, !self.queue.isEmpty else { return }
        let now = context.eventLoop.now
        var expired: [EventLoopPromise<RESPValue>] = []
        while self.overdue < self.queue.count {
            let pending = self.queue[self.queue.index(self.queue.startIndex, offsetBy: self.overdue)]
            guard pending.deadline <= now else { break }
            expired.append(pending.promise)
            self.overdue += 1
        }
        if let oldest = self.queue.first, self.overdue > 0, oldest.deadline + self.lateReplyWindow <= now {
            self.logger.warning(
                "redis sent no reply for the late-reply window; closing the connection",
                metadata: ["unanswered": "\(self.overdue)", "window_ms": "\(self.lateReplyWindow.nanoseconds / 1_000_000)"]
            )
            self.fail(RESPError(.connectionClosed, "connection closed: no reply within the late-reply window"), close: true)
            let timeout = self.timeoutError
            for promise in expired { promise.fail(timeout) }
            return
        }
        if !expired.isEmpty && !self.health.stalled.exchange(true, ordering: .relaxed) {
            self.logger.warning(
                "redis command timed out; the connection takes no new commands until it answers",
                metadata: ["in_flight": "\(self.queue.count)"]
            )
            self.onStall?()
        }
        self.rearm(eventLoop: context.eventLoop)
        // Last: a caller's callback may send or close on this connection.
        let timeout = self.timeoutError
        for promise in expired { promise.fail(timeout) }
    }

    private func rearm(eventLoop: any EventLoop) {
        guard self.timer == nil, let oldest = self.queue.first else { return }
        var next: NIODeadline?
        if self.overdue < self.queue.count {
            next = self.queue[self.queue.index(self.queue.startIndex, offsetBy: self.overdue)].deadline
        }
        if self.overdue > 0 {
            let giveUp = oldest.deadline + self.lateReplyWindow
            next = next.map { Swift.min($0, giveUp) } ?? giveUp
        }
        if let next { self.armTimer(at: next, eventLoop: eventLoop) }
    }

    private var timeoutError: RESPError {
        RESPError(.timeout, "no reply within \(self.formatted(self.commandTimeout))")
    }

    private func formatted(_ t: TimeAmount) -> String {
        let ms = t.nanoseconds / 1_000_000
        return "\(ms) ms"
    }

    private func fail(_ error: RESPError, close: Bool) {
        let context: ChannelHandlerContext?
        switch self.state {
        case .active(let c): context = c
        case .idle: context = nil
        case .closed: context = nil
        }
        if case .closed = self.state {} else { self.state = .closed(error) }
        self.timer?.cancel()
        self.timer = nil
        self.cumulation = nil
        // Replies that will never come: their late handlers get nothing. The stall handler
        // holds the connection that holds this handler: let both go.
        self.queue.removeFirst(self.overdue)
        self.overdue = 0
        self.onStall = nil
        // Detach the queue first: completing a promise may run callbacks that call back in.
        var failed = self.queue
        self.queue.removeAll()
        while let pending = failed.popFirst() {
            pending.promise.fail(error)
        }
        if close, let context {
            context.close(promise: nil)
        }
    }
}
