import Logging
import NIOCore

/// The single channel handler of a RESP connection: it encodes commands, decodes replies and
/// matches them to their promises through one FIFO queue.
///
/// Redis answers strictly in order, so a queue of promises is all the bookkeeping needed
/// for any amount of pipelining. Timeouts use the same property: only the oldest command's
/// deadline can expire first, so one timer, re-armed lazily, covers the whole queue instead of
/// one scheduled task per command. When the oldest command times out the stream can no
/// longer be trusted (a late reply would be matched to the wrong command), so every queued
/// command fails and the channel is closed; the pool then replaces the connection.
///
/// Everything here runs on the channel's event loop; ``RESPConnection`` gets there.
final class RESPChannelHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private struct Pending {
        let promise: EventLoopPromise<RESPValue>
        let deadline: NIODeadline
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
    private let commandTimeout: TimeAmount
    private let logger: Logger
    /// Receives RESP3 push messages, and in pub/sub mode also RESP2 `message`/`pmessage` arrays.
    var onPush: ((RESPValue) -> Void)?
    /// In pub/sub mode, subscription confirmations are matched to commands and messages go to
    /// `onPush`, whatever the protocol version.
    var pubSubMode = false

    init(commandTimeout: TimeAmount, limits: RESPDecoderLimits, logger: Logger) {
        self.commandTimeout = commandTimeout
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
        if case .error(let message) = value {
            pending.promise.fail(RESPError.server(message))
        } else {
            pending.promise.succeed(value)
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
    func send(_ command: RESPCommand, timeout: TimeAmount? = nil, promise: EventLoopPromise<RESPValue>) {
        guard case .active(let context) = self.state else {
            promise.fail(self.closedError)
            return
        }
        self.outbound.clear()
        command.encode(into: &self.outbound)
        self.enqueue(promise, timeout: timeout, eventLoop: context.eventLoop)
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
            self.enqueue(promise, timeout: timeout, eventLoop: context.eventLoop)
        }
        context.writeAndFlush(self.wrapOutboundOut(self.outbound), promise: nil)
    }

    /// Fails everything queued with `error` and closes the channel.
    func close(with error: RESPError) {
        self.fail(error, close: true)
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

    private func enqueue(_ promise: EventLoopPromise<RESPValue>, timeout: TimeAmount?, eventLoop: any EventLoop) {
        let deadline = eventLoop.now + (timeout ?? self.commandTimeout)
        self.queue.append(Pending(promise: promise, deadline: deadline))
        if self.timer == nil {
            self.armTimer(at: deadline, eventLoop: eventLoop)
        }
    }

    // MARK: Timeouts

    private func armTimer(at deadline: NIODeadline, eventLoop: any EventLoop) {
        let loopBound = NIOLoopBound(self, eventLoop: eventLoop)
        self.timer = eventLoop.scheduleTask(deadline: deadline) {
            loopBound.value.timerFired()
        }
    }

    private func timerFired() {
        self.timer = nil
        guard case .active(let context) = self.state, let head = self.queue.first else { return }
        if head.deadline <= context.eventLoop.now {
            self.logger.warning("redis command timed out; closing connection", metadata: ["in_flight": "\(self.queue.count)"])
            let timeout = RESPError(.timeout, "no reply within \(self.formatted(self.commandTimeout))")
            let first = self.queue.removeFirst()
            self.fail(RESPError(.connectionClosed, "connection closed after an earlier command timed out"), close: true)
            first.promise.fail(timeout)
        } else {
            self.armTimer(at: head.deadline, eventLoop: context.eventLoop)
        }
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
