import Logging
import NIOCore
import NIOExtras
import NIOHTTP1
import TollgateCore

/// The data plane: one handler per connection, directly over the socket's bytes (no HTTP
/// codec, no pipelining handler), deciding every request on the event loop.
///
/// Bytes read are parsed by ``LLHTTPParser`` as far as the ``ConnectionStateMachine`` lets
/// them be; each request is numbered, decided (a cached key costs a digest and an index
/// probe under a short lock), and its answer written from prebuilt bytes into one outbound
/// buffer, in request order, flushed once per read (or once per store completion). For
/// SQLite an admitted answer leaves only when the store completes its promise, after the
/// group commit that made its usage durable. Forwarded requests relay bytes both ways
/// (``GatewayConnection`` `+Proxy`).
final class GatewayConnection<Store: KeyStore, Clock: WallClock>: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let shared: DataPlaneShared<Store, Clock>
    var machine: ConnectionStateMachine<NIODeadline>
    let parser: LLHTTPParser
    /// Bytes read and not yet parsed.
    var input = ByteBuffer()
    /// Answers written and not yet flushed.
    var out = ByteBuffer()
    /// The requests whose answers are owed, the next to be written first.
    var owed = CircularBuffer<OwedAnswer>(initialCapacity: 4)
    var context: ChannelHandlerContext?
    private var idleTimer: Scheduled<Void>?
    var dateLine = DateLine()
    /// Whether a read is being handled (answers written meanwhile are flushed at its end).
    private var inRead = false
    private var parsing = false
    private var closingAfterWrite = false
    /// The bytes of a forward-auth question's body read away so far.
    var droppedBodyBytes = 0
    /// The request being forwarded upstream, if any.
    var exchange: ProxyExchange?
    /// One timer per connection for upstream answer timeouts, re-armed lazily.
    var responseTimer: (task: Scheduled<Void>, deadline: NIODeadline)?
    /// This connection's event loop's upstream pool, found on first use.
    var pool: UpstreamPool?
    /// The peer's address and its text for `X-Forwarded-For`, once known.
    var peer: (address: SocketAddress?, text: String?)?
    var requestIDs = RequestIDs()

    init(shared: DataPlaneShared<Store, Clock>) {
        self.shared = shared
        self.machine = ConnectionStateMachine(idleTimeout: shared.configuration.idleTimeout, now: .now())
        self.parser = LLHTTPParser(kind: .request, maximumHeadBytes: shared.configuration.maxHeaderBytes, maximumFields: 100)
    }

    // MARK: Connection

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        out = context.channel.allocator.buffer(capacity: 1024)
        if context.channel.isActive { activate(context: context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        activate(context: context)
        context.fireChannelActive()
    }

    private func activate(context: ChannelHandlerContext) {
        guard idleTimer == nil else { return }
        armIdleTimer(context: context, at: machine.activated(now: context.eventLoop.now))
    }

    func channelInactive(context: ChannelHandlerContext) {
        machine.inactive()
        tearDown()
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        tearDown()
        self.context = nil
    }

    private func tearDown() {
        abandonExchange()
        idleTimer?.cancel()
        idleTimer = nil
        // Answers still owed are counted as answered to a connection that went away.
        while var answer = owed.popFirst() {
            shared.monitor.answered(&answer.observed, status: .serviceUnavailable, now: .now(), clock: shared.clock)
        }
    }

    private func armIdleTimer(context: ChannelHandlerContext, at deadline: NIODeadline) {
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        idleTimer = context.eventLoop.scheduleTask(deadline: deadline) {
            let (handler, context) = loopBound.value
            handler.idleTimerFired(context: context)
        }
    }

    private func idleTimerFired(context: ChannelHandlerContext) {
        switch machine.timerFired(now: context.eventLoop.now) {
        case .none:
            idleTimer = nil
        case .close:
            idleTimer = nil
            shared.logger.debug("closing an idle connection")
            context.close(promise: nil)
        case .rearm(let deadline):
            armIdleTimer(context: context, at: deadline)
        }
    }

    /// Graceful shutdown (NIO's quiescing): no new request is read; the answers owed are
    /// written, then the connection closes.
    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard event is ChannelShouldQuiesceEvent else { return context.fireUserInboundEventTriggered(event) }
        if machine.quiesce() { closeNow() }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        shared.logger.debug("closing a connection after an error", metadata: ["error": "\(error)"])
        machine.inactive()
        context.close(promise: nil)
    }

    // MARK: Reading

    func read(context: ChannelHandlerContext) {
        if machine.readRequested() { context.read() }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = unwrapInboundIn(data)
        inRead = true
        // After the last request, what a client sends is not read as HTTP.
        guard !machine.isClosed, machine.reading != .stopped else { return }
        if input.readableBytes == 0 {
            input = buffer
        } else {
            input.writeBuffer(&buffer)
        }
        parseInput()
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        inRead = false
        flush()
        context.fireChannelReadComplete()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if machine.writabilityChanged(context.channel.isWritable, now: context.eventLoop.now) { context.read() }
        if context.channel.isWritable {
            exchange?.connection?.handler.resumeReads()
            parseInput()
        }
        context.fireChannelWritabilityChanged()
    }

    /// Parses what was read, as far as the machine lets it.
    func parseInput() {
        guard !parsing else { return }
        parsing = true
        defer { parsing = false }
        // After a head, llhttp runs once more even over no bytes: a message without a body
        // ends there, and an error in a head's framing shows there.
        var afterHead = false
        while machine.mayParse && (input.readableBytes > 0 || afterHead) {
            afterHead = false
            let (consumed, stop) = parser.execute(input)
            if parser.takeHead() { headArrived(parser.head) }
            if !parser.bodySpans.isEmpty { bodyArrived(parser.bodySpans) }
            input.moveReaderIndex(forwardBy: consumed)
            switch stop {
            case .endOfInput:
                break
            case .head:
                afterHead = true
            case .message:
                endArrived()
            case .upgrade:
                endArrived()
                machine.upgraded()
            case .failed(let failure):
                parseFailed(failure)
            }
        }
        keepInput()
    }

    /// Drops the read buffer once parsed (NIO's pooled buffer is then free for the next
    /// read); bytes still to parse are copied into a buffer of their own.
    private func keepInput() {
        if input.readableBytes == 0 {
            input = ByteBuffer()
        } else if input.readerIndex > 0 {
            var kept = ByteBuffer()
            kept.writeImmutableBuffer(input)
            input = kept
        }
    }

    private func parseFailed(_ failure: HTTPParseFailure) {
        let problem: Problem = failure == .headTooLarge ? .headersTooLarge : .badRequest
        switch machine.parseFailed() {
        case .answer(let number):
            owed.append(OwedAnswer(number: number, plan: .problem(problem), isHead: false, http10: false, start: context?.eventLoop.now))
            writeProblem(number, problem)
        case .refuseBody(let number):
            writeProblem(number, .badRequest)
        case .failStream:
            if let exchange {
                failExchange(exchange, with: .badRequest, reason: "the request body is malformed (\(failure))")
            } else {
                closeNow()
            }
        case .close:
            closeNow()
        case .none:
            break
        }
    }

    private func endArrived() {
        switch machine.endReceived() {
        case .decide(let number):
            decide(number)
        case .forwardEnd:
            proxyEnd()
        case .beginStream(let number):
            startProxy(number)
        case .closeWhenWritten:
            if machine.owed == 0 { closeNow() }
        case .none:
            break
        }
    }

    // MARK: Writing

    /// Writes answer `number`: into the outbound buffer if it is next, else aside until its
    /// turn. `build` writes the whole answer, given what it must say about the connection.
    func respond(_ number: Int, status: HTTPResponseStatus, _ build: (inout ByteBuffer, ConnectionField) -> Void) {
        guard let context, let index = owedIndex(number) else { return }
        let now = context.eventLoop.now
        shared.monitor.answered(&owed[offset: index].observed, status: status, now: now, clock: shared.clock)
        if machine.proxy?.number == number {
            // A refusal in place of a forwarded request's answer.
            abandonExchange()
            _ = machine.answerBegins(now: now)
            machine.proxyEnded()
        }
        let connection = connectionField(for: number, http10: owed[offset: index].http10)
        if machine.mayWrite(number) {
            build(&out, connection)
            owed[offset: index].state = .written
        } else {
            var aside = context.channel.allocator.buffer(capacity: 256)
            build(&aside, connection)
            owed[offset: index].state = .ready(aside)
        }
        writeAnswersInOrder()
    }

    /// What answer `number` says about the connection: `close` if it is the last before
    /// the connection closes; `keep-alive` for an HTTP/1.0 client that keeps it.
    func connectionField(for number: Int, http10: Bool) -> ConnectionField {
        if machine.closing && number == machine.nextRequest - 1 { return .close }
        return http10 ? .keepAlive : .none
    }

    func owedIndex(_ number: Int) -> Int? {
        let index = number - machine.nextAnswer
        guard index >= 0, index < owed.count, owed[offset: index].number == number else { return nil }
        return index
    }

    /// Writes every answer that is ready, in order, and carries out what the machine says
    /// after each; then lets the connection go on (a waiting stream, held reads, held input).
    func writeAnswersInOrder() {
        guard let context else { return }
        while let first = owed.first {
            switch first.state {
            case .owed, .streaming:
                return resumeAfterAnswers(context)
            case .ready(let aside):
                out.writeImmutableBuffer(aside)
            case .written:
                break
            }
            owed.removeFirst()
            switch machine.answerWritten(now: context.eventLoop.now) {
            case .keepOpen:
                break
            case .close(let outputOnly):
                return closeAfterWrite(outputOnly: outputOnly)
            case .drop:
                out.clear()
                return
            }
        }
        resumeAfterAnswers(context)
    }

    private func resumeAfterAnswers(_ context: ChannelHandlerContext) {
        if let number = machine.streamMayBegin() { startProxy(number) }
        if !inRead { flush() }
        if machine.takeHeldRead() { context.read() }
        if !parsing && input.readableBytes > 0 && machine.mayParse { parseInput() }
    }

    /// The streamed answer at the front has ended.
    func streamedAnswerEnded() {
        guard let context, !owed.isEmpty else { return }
        owed.removeFirst()
        switch machine.answerWritten(now: context.eventLoop.now) {
        case .keepOpen:
            writeAnswersInOrder()
        case .close(let outputOnly):
            closeAfterWrite(outputOnly: outputOnly)
        case .drop:
            out.clear()
        }
    }

    func flush() {
        guard let context, out.readableBytes > 0 else { return }
        context.writeAndFlush(wrapOutboundOut(out), promise: nil)
        // Reused when the socket took it whole (NIO then holds no copy), else a new one.
        out.clear()
    }

    /// Flushes what is written, then closes the connection (its output only while a
    /// refused body still arrives, to be read away).
    private func closeAfterWrite(outputOnly: Bool) {
        guard let context, !closingAfterWrite || !outputOnly else { return }
        let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
        let promise = context.eventLoop.makePromise(of: Void.self)
        promise.futureResult.assumeIsolated().whenComplete { _ in
            loopBound.value.close(mode: outputOnly ? .output : .all, promise: nil)
        }
        if outputOnly { closingAfterWrite = true }
        context.writeAndFlush(wrapOutboundOut(out), promise: promise)
        out.clear()
        // A refused body still arriving is read away (it may have been held).
        if outputOnly, machine.takeHeldRead() { context.read() }
    }

    func closeNow() {
        guard let context else { return }
        machine.inactive()
        flush()
        context.close(promise: nil)
    }
}

/// A request whose answer is owed, in the order answers leave.
struct OwedAnswer {
    enum State {
        case owed
        /// Built out of turn, waiting for the answers before it.
        case ready(ByteBuffer)
        /// Written into the outbound buffer.
        case written
        /// A forwarded answer being relayed.
        case streaming
    }

    let number: Int
    var plan: RequestPlan
    let isHead: Bool
    let http10: Bool
    var state = State.owed
    var observed = ObservedRequest()
    /// The head, kept for requests decided after it has gone from the parser (forwarded ones).
    var head: MessageHead?

    init(number: Int, plan: RequestPlan, isHead: Bool, http10: Bool, start: NIODeadline?) {
        self.number = number
        self.plan = plan
        self.isHead = isHead
        self.http10 = http10
        observed.start = start
    }
}

/// Request ids: a random tag per connection and a count, unique enough to find a request
/// in the logs on both sides without a random draw per request.
struct RequestIDs {
    private let tag = String(UInt64.random(in: 0...UInt64.max) & 0xFFFF_FFFF_FFFF, radix: 16)
    private var count = 0

    mutating func next() -> String {
        count += 1
        return "\(tag)-\(count)"
    }
}
