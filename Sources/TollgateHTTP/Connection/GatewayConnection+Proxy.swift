import Logging
import NIOCore
import NIOHTTP1
import TollgateCore

/// One request on its way to an upstream and its answer on the way back: the I/O side of a
/// ``ProxyStateMachine`` (which the connection's machine holds).
final class ProxyExchange {
    let number: Int
    let head: MessageHead
    let route: Route
    let upstream: Upstream
    let requestID: String
    var connection: UpstreamConnection?
    /// How the request's body goes upstream, and the answer's to the client.
    let requestFraming: BodyFraming
    var answerFraming = BodyFraming.none
    var bodyBytes = 0
    var endSent = false
    var answerStarted = false
    var upstreamKeepAlive = true
    /// The admission's limits, reported in the answer's RateLimit fields.
    var limits: [LimitStatus] = []
    /// When the upstream's answer must have begun; set once the request has ended.
    var responseDeadline: NIODeadline?
    var keyID: KeyID?
    /// The admission to give back if the upstream fails the request, kept only on a route
    /// with `give_back_on_5xx`; cleared once given back, so it is given back once.
    var admission: (request: AdmissionRequest, decision: AdmissionDecision)?

    init(number: Int, head: MessageHead, route: Route, upstream: Upstream, requestID: String) {
        self.number = number
        self.head = head
        self.route = route
        self.upstream = upstream
        self.requestID = requestID
        requestFraming = head.isChunked ? .chunked : head.contentLength.map { $0 > 0 ? .length($0) : .none } ?? .none
    }

    var isHead: Bool { head.method == .HEAD }

    static func isIdempotent(_ method: HTTPMethod) -> Bool {
        switch method {
        case .GET, .HEAD, .OPTIONS, .PUT, .DELETE, .TRACE: true
        default: false
        }
    }
}

// MARK: Forwarding

/// Forwarding: the request is decided from its head, while its body is held; once admitted
/// it goes upstream on a pooled connection of this event loop, its body following as the
/// upstream takes it, and the answer streams back as the client takes it. Both heads are
/// rewritten from the parsed spans and both bodies re-framed as they pass (``ProxyHeaders``).
extension GatewayConnection: UpstreamDelegate {
    func startProxy(_ number: Int) {
        guard let index = owedIndex(number), case .proxy(let route, let upstream, let path) = owed[offset: index].plan,
            let head = owed[offset: index].head
        else { return }
        if let length = head.contentLength, length > upstream.maxBodyBytes {
            return writeProblem(number, .bodyTooLarge)
        }
        let exchange = ProxyExchange(number: number, head: head, route: route, upstream: upstream, requestID: requestIDs.next())
        self.exchange = exchange
        admit(number, head: head, route: route, path: path) { this, request, decision in
            guard this.exchange === exchange else { return }
            _ = this.machine.updateProxy { $0.admitted() }
            if exchange.upstream.giveBackOn5xx { exchange.admission = (request, decision) }
            exchange.limits = decision.limits
            exchange.keyID = decision.keyID
            this.connect(exchange, fresh: false)
        }
    }

    /// The upstream failed the request (a `5xx` answer, or none: `502`, `504`): on a route
    /// with `give_back_on_5xx`, the request's units go back to the key, once. Not awaited:
    /// the answer does not depend on it.
    func giveBackIfAsked(_ exchange: ProxyExchange) {
        guard let admission = exchange.admission else { return }
        exchange.admission = nil
        shared.store.giveBack(admission.request, decision: admission.decision)
        if let index = owedIndex(exchange.number) { shared.monitor.gaveBack(api: owed[offset: index].observed.api) }
    }

    private func connect(_ exchange: ProxyExchange, fresh: Bool) {
        guard let context else { return }
        if pool == nil { pool = shared.pools.pool(for: context.eventLoop) }
        // The usual case, a pooled connection, is taken at once: no future, no callback.
        if !fresh, let connection = pool!.takeIdle(exchange.upstream) {
            return forward(exchange, over: connection)
        }
        pool!.open(exchange.upstream, maximumHeadBytes: 64 * 1024).assumeIsolated().whenComplete { result in
            switch result {
            case .success(let connection):
                guard self.exchange === exchange, !self.machine.isClosed else {
                    self.pool?.release(connection, upstream: exchange.upstream)
                    return
                }
                self.forward(exchange, over: connection)
            case .failure(let error):
                guard self.exchange === exchange else { return }
                self.shared.logger.warning(
                    "upstream unreachable",
                    metadata: [
                        "request": "\(exchange.requestID)", "api": "\(exchange.route.name)", "upstream": "\(exchange.upstream.address)",
                        "error": "\(error)",
                    ]
                )
                self.exchange = nil
                self.giveBackIfAsked(exchange)
                self.writeUpstreamFailure(.upstreamUnavailable, for: exchange)
            }
        }
    }

    private func forward(_ exchange: ProxyExchange, over connection: UpstreamConnection) {
        guard let context else { return }
        exchange.connection = connection
        connection.handler.delegate = self
        connection.handler.expectAnswer(toHEAD: exchange.isHead)
        connection.handler.resumeReads()
        let upstream = exchange.upstream
        let peer = peer(context)
        var buffer = connection.channel.allocator.buffer(capacity: exchange.head.bytes.readableBytes + 256)
        let expectsContinue = ProxyHeaders.writeRequest(
            exchange.head, target: upstream.target(for: exchange.head.targetString, prefix: exchange.route.prefix), into: &buffer,
            host: upstream.hostField, clientIP: peer.text, trustedPeer: shared.routes.current.trusts(peer.address),
            requestID: exchange.requestID, keyIDHeader: upstream.keyIDHeader, keyID: exchange.keyID, framing: exchange.requestFraming)
        let ended = machine.proxy?.requestEnded ?? true
        if expectsContinue, !ended, !(machine.proxy?.retried ?? false) {
            out.writeStaticString("HTTP/1.1 100 Continue\r\n\r\n")
            flush()
        }
        connection.channel.write(buffer, promise: nil)
        let resume = machine.updateProxy {
            $0.sent()
            $0.upstreamWritabilityChanged(connection.channel.isWritable)
        }
        if ended {
            sendEnd(exchange)
        } else {
            connection.channel.flush()
            if resume { context.read() }
            parseInput()
        }
    }

    /// The peer's address, and its text for `X-Forwarded-For`, read and formatted once per
    /// connection (reading the channel's address takes a lock, and formatting it allocates).
    private func peer(_ context: ChannelHandlerContext) -> (address: SocketAddress?, text: String?) {
        if let peer { return peer }
        let address = context.channel.remoteAddress
        let found = (address, address?.ipAddress)
        peer = found
        return found
    }

    /// Body data of the forwarded request: re-framed and written upstream as it is parsed.
    func proxyBody(_ spans: [Range<Int>]) {
        guard let context, let exchange else { return }
        machine.streamed(now: context.eventLoop.now)
        for span in spans {
            exchange.bodyBytes += span.count
            guard exchange.bodyBytes <= exchange.upstream.maxBodyBytes else {
                // A chunked body that outgrew the limit: already counted, never finished upstream.
                return failExchange(exchange, with: .bodyTooLarge, reason: "request body above the route's limit")
            }
        }
        guard let connection = exchange.connection else { return }
        for span in spans {
            let slice = input.getSlice(at: input.readerIndex + span.lowerBound, length: span.count)!
            if exchange.requestFraming == .chunked {
                var size = connection.channel.allocator.buffer(capacity: 12)
                size.writeString(String(span.count, radix: 16))
                size.writeStaticString("\r\n")
                connection.channel.write(size, promise: nil)
                connection.channel.write(slice, promise: nil)
                connection.channel.write(ByteBuffer(staticString: "\r\n"), promise: nil)
            } else {
                connection.channel.write(slice, promise: nil)
            }
        }
        connection.channel.flush()
        _ = machine.updateProxy {
            $0.bodySent()
            $0.upstreamWritabilityChanged(connection.channel.isWritable)
        }
    }

    /// The forwarded request's body has ended: its end goes upstream once it is connected.
    func proxyEnd() {
        guard let exchange, exchange.connection != nil else { return }
        sendEnd(exchange)
    }

    private func sendEnd(_ exchange: ProxyExchange) {
        guard let context, let connection = exchange.connection, !exchange.endSent else { return }
        exchange.endSent = true
        if exchange.requestFraming == .chunked {
            connection.channel.writeAndFlush(ByteBuffer(staticString: "0\r\n\r\n"), promise: nil)
        } else {
            connection.channel.flush()
        }
        guard !exchange.answerStarted else { return }
        let deadline = context.eventLoop.now + exchange.upstream.responseTimeout
        exchange.responseDeadline = deadline
        // Like the idle timer, one timer serves every request on the connection: it is
        // moved only when a deadline comes sooner than the one it is set for.
        if let timer = responseTimer, timer.deadline <= deadline { return }
        armResponseTimer(at: deadline, context: context)
    }

    private func armResponseTimer(at deadline: NIODeadline, context: ChannelHandlerContext) {
        responseTimer?.task.cancel()
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        let task = context.eventLoop.scheduleTask(deadline: deadline) {
            loopBound.value.responseTimerFired()
        }
        responseTimer = (task, deadline)
    }

    private func responseTimerFired() {
        responseTimer = nil
        guard let context, let exchange, !exchange.answerStarted, let deadline = exchange.responseDeadline else { return }
        if context.eventLoop.now >= deadline {
            failExchange(exchange, with: .upstreamTimeout, reason: "upstream answered too slowly")
        } else {
            armResponseTimer(at: deadline, context: context)
        }
    }

    /// Ends an exchange that cannot finish: closes its upstream connection (never reused) and
    /// answers `problem` if the answer has not begun, else closes the client connection.
    func failExchange(_ exchange: ProxyExchange, with problem: Problem, reason: String) {
        shared.logger.warning(
            "\(reason)",
            metadata: ["request": "\(exchange.requestID)", "api": "\(exchange.route.name)", "upstream": "\(exchange.upstream.address)"]
        )
        self.exchange = nil
        if let connection = exchange.connection {
            connection.handler.delegate = nil
            connection.channel.close(promise: nil)
        }
        if exchange.answerStarted {
            closeNow()
        } else if problem == .upstreamUnavailable || problem == .upstreamTimeout {
            // The gateway answers for an upstream that failed.
            giveBackIfAsked(exchange)
            writeUpstreamFailure(problem, for: exchange)
        } else {
            // A body above the limit or a malformed one is the client's doing, and stays counted.
            writeProblem(exchange.number, problem)
        }
    }

    /// A `502` or `504` whose text says whether the request's unit was kept or given back.
    private func writeUpstreamFailure(_ problem: Problem, for exchange: ProxyExchange) {
        let prebuilt = exchange.upstream.giveBackOn5xx ? shared.givenBackProblems[problem] : nil
        writeProblem(exchange.number, problem, prebuilt: prebuilt)
    }

    /// The client connection went away: the upstream connection goes too (its request is half sent).
    func abandonExchange() {
        responseTimer?.task.cancel()
        responseTimer = nil
        guard let exchange else { return }
        self.exchange = nil
        if let connection = exchange.connection {
            connection.handler.delegate = nil
            connection.channel.close(promise: nil)
        }
    }

    // MARK: UpstreamDelegate

    func upstreamHead(_ head: MessageHead) {
        guard let context, let exchange, let index = owedIndex(exchange.number) else { return }
        // Interim answers are the gateway's to give (its own 100 Continue), not relayed.
        if head.status < 200 { return }
        let now = context.eventLoop.now
        machine.streamed(now: now)
        exchange.answerStarted = true
        exchange.upstreamKeepAlive = head.keepAlive
        _ = machine.updateProxy { $0.answerBegan() }
        if exchange.admission != nil, (500..<600).contains(head.status) { giveBackIfAsked(exchange) }
        let http10 = owed[offset: index].http10
        var version = HTTPVersion.http1_1
        if exchange.isHead || head.hasNoBody {
            // No body: a HEAD answer keeps the length its GET would have.
            exchange.answerFraming = .none
        } else if let length = head.contentLength {
            exchange.answerFraming = .length(length)
        } else if http10 {
            // An HTTP/1.0 client knows no chunks: an answer of unknown length is sent as it
            // comes and ends when the connection closes (RFC 9112 section 6.3).
            exchange.answerFraming = .untilClose
            machine.closeAfterAnswers()
            version = .http1_0
        } else {
            exchange.answerFraming = .chunked
        }
        let closes = machine.answerBegins(now: now)
        let connection: ConnectionField = closes ? .close : (http10 ? .keepAlive : .none)
        let framing: BodyFraming =
            (exchange.isHead || head.hasNoBody) ? (head.contentLength.map { .length($0) } ?? .none) : exchange.answerFraming
        var status = HTTPResponseStatus(statusCode: head.status)
        if status.code == 0 { status = .badGateway }
        // A streamed answer is counted and logged at its head, once, whether or not its body
        // arrives whole: the duration is the time to the answer's first byte.
        shared.monitor.answered(&owed[offset: index].observed, status: status, now: now, clock: shared.clock)
        owed[offset: index].state = .streaming
        ProxyHeaders.writeAnswer(
            head, into: &out, limits: exchange.limits, requestID: exchange.requestID, date: date(), framing: framing,
            connection: connection, version: version)
    }

    func upstreamBody(_ buffer: ByteBuffer, spans: [Range<Int>]) {
        guard let context, let exchange, !exchange.isHead else { return }
        machine.streamed(now: context.eventLoop.now)
        for span in spans {
            let slice = buffer.getSlice(at: buffer.readerIndex + span.lowerBound, length: span.count)!
            if exchange.answerFraming == .chunked {
                out.writeString(String(span.count, radix: 16))
                out.writeStaticString("\r\n")
                out.writeImmutableBuffer(slice)
                out.writeStaticString("\r\n")
            } else {
                out.writeImmutableBuffer(slice)
            }
        }
        if out.readableBytes >= 64 * 1024 { flush() }
        if !context.channel.isWritable { exchange.connection?.handler.pauseReads() }
    }

    func upstreamEnd() {
        guard let exchange else { return }
        guard exchange.answerStarted else {
            // An answer that ended without a head of its own (only interim ones): none came.
            return upstreamClosed(error: nil)
        }
        self.exchange = nil
        if exchange.answerFraming == .chunked { out.writeStaticString("0\r\n\r\n") }
        if let connection = exchange.connection {
            // Reused only after a whole request and a whole keep-alive answer.
            if exchange.endSent && exchange.upstreamKeepAlive && !connection.handler.sentTooMuch {
                pool?.release(connection, upstream: exchange.upstream)
            } else {
                connection.handler.delegate = nil
                connection.channel.close(promise: nil)
            }
        }
        streamedAnswerEnded()
        flush()
    }

    func upstreamReadComplete() {
        flush()
    }

    func upstreamWritabilityChanged(_ isWritable: Bool) {
        guard let context, exchange?.connection != nil else { return }
        if machine.updateProxy({ $0.upstreamWritabilityChanged(isWritable) }) { context.read() }
        if isWritable { parseInput() }
    }

    func upstreamClosed(error: (any Error)?) {
        guard let exchange else { return }
        if exchange.answerStarted {
            // The answer cannot be finished: the client sees its connection close.
            self.exchange = nil
            return closeNow()
        }
        // A pooled connection the upstream closed while it idled fails the request sent on
        // it before one byte of an answer: send it once more on a new connection, if it can
        // be sent again as it was. See ``UpstreamConnection/mayRetry``.
        let safe = (exchange.connection?.mayRetry ?? false) && ProxyExchange.isIdempotent(exchange.head.method)
        if retry(exchange, safe: safe) {
            exchange.connection = nil
            exchange.endSent = false
            exchange.responseDeadline = nil
            shared.logger.debug("retrying on a new upstream connection", metadata: ["request": "\(exchange.requestID)"])
            return connect(exchange, fresh: true)
        }
        exchange.connection = nil
        failExchange(
            exchange, with: .upstreamUnavailable, reason: error.map { "upstream failed: \($0)" } ?? "upstream closed the connection")
    }

    /// Asks the machine whether a failed send may be tried again.
    private func retry(_ exchange: ProxyExchange, safe: Bool) -> Bool {
        var retried = false
        _ = machine.updateProxy { retried = $0.retryAfterFailure(safe: safe) }
        return retried
    }
}
