import Logging
import NIOCore
import NIOHTTP1
import TollgateCore

/// One request on its way to an upstream and its answer on the way back.
final class ProxyExchange {
    let head: HTTPRequestHead
    let route: Route
    let upstream: Upstream
    let requestID: String
    let context: ChannelHandlerContext
    var connection: UpstreamConnection?
    /// Body parts that arrived before the upstream connection was ready (one read's worth at most).
    var pending: [ByteBuffer] = []
    var bodyBytes = 0
    var requestEnded = false
    var endForwarded = false
    var responseStarted = false
    var upstreamKeepAlive = true
    /// The admission's RateLimit fields, added to the upstream's answer.
    var rateLimitFields = HTTPHeaders()
    /// When the upstream's answer must have begun; set once the request is sent.
    var responseDeadline: NIODeadline?
    /// The key's id, sent upstream (kept for a retry).
    var keyID: KeyID?
    /// Whether the request was sent again on a new connection after a pooled one failed.
    var retried = false
    /// The admission to give back if the upstream fails the request, kept only on a route
    /// with `give_back_on_5xx`; cleared once given back, so it is given back once.
    var admission: (request: AdmissionRequest, decision: AdmissionDecision)?

    init(head: HTTPRequestHead, route: Route, upstream: Upstream, requestID: String, context: ChannelHandlerContext) {
        self.head = head
        self.route = route
        self.upstream = upstream
        self.requestID = requestID
        self.context = context
    }

    var isHead: Bool { head.method == .HEAD }
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

// MARK: Forwarding

/// Forwarding: the request is decided from its head, while its body is held; once admitted
/// it goes upstream on a pooled connection of this event loop, its body following as the
/// upstream takes it, and the answer streams back as the client takes it.
extension DataPlaneHandler: UpstreamDelegate {

    /// `hasBody`: `false` when the request has ended with its head (its end, which follows,
    /// is not waited for before the end goes upstream).
    func startProxy(_ head: HTTPRequestHead, route: Route, upstream: Upstream, path: String, hasBody: Bool, context: ChannelHandlerContext)
    {
        let isHead = head.method == .HEAD
        observe(route)
        if let length = head.headers.first(name: "content-length").flatMap({ Int($0) }), length > upstream.maxBodyBytes {
            return writeProblem(.bodyTooLarge, isHead: isHead, context: context)
        }
        let exchange = ProxyExchange(head: head, route: route, upstream: upstream, requestID: requestIDs.next(), context: context)
        exchange.requestEnded = !hasBody
        self.exchange = exchange
        decide(head.headers, route: route, path: path, isHead: isHead, context: context) { request, decision, rateLimitFields in
            guard self.exchange === exchange else { return }
            if exchange.upstream.giveBackOn5xx { exchange.admission = (request, decision) }
            self.connect(exchange, decision: decision, rateLimitFields: rateLimitFields)
        }
    }

    private func connect(_ exchange: ProxyExchange, decision: AdmissionDecision, rateLimitFields: HTTPHeaders) {
        exchange.rateLimitFields = rateLimitFields
        exchange.keyID = decision.keyID
        connect(exchange, fresh: false)
    }

    /// The upstream failed the request (a `5xx` answer, or none: `502`, `504`): on a route
    /// with `give_back_on_5xx`, the request's units go back to the key, once. Not awaited:
    /// the answer does not depend on it.
    func giveBackIfAsked(_ exchange: ProxyExchange) {
        guard let admission = exchange.admission else { return }
        exchange.admission = nil
        shared.store.giveBack(admission.request, decision: admission.decision)
        shared.monitor.gaveBack(api: observed.api)
    }

    private func connect(_ exchange: ProxyExchange, fresh: Bool) {
        let context = exchange.context
        if pool == nil { pool = shared.pools.pool(for: context.eventLoop) }
        // The usual case, a pooled connection, is taken at once: no future, no callback.
        if !fresh, let connection = pool!.takeIdle(exchange.upstream) {
            return forward(exchange, over: connection, keyID: exchange.keyID)
        }
        pool!.open(exchange.upstream).assumeIsolated().whenComplete { result in
            switch result {
            case .success(let connection):
                guard self.exchange === exchange, !self.machine.isClosed else {
                    self.pool?.release(connection, upstream: exchange.upstream)
                    return
                }
                self.forward(exchange, over: connection, keyID: exchange.keyID)
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

    private func forward(_ exchange: ProxyExchange, over connection: UpstreamConnection, keyID: KeyID?) {
        let context = exchange.context
        exchange.connection = connection
        connection.handler.delegate = self
        connection.bytesSeen.seen = false
        connection.handler.resumeReads()
        let upstream = exchange.upstream
        let peer = peer(context)
        let (headers, expectsContinue) = ProxyHeaders.request(
            exchange.head.headers, host: upstream.hostField, clientIP: peer.text, trustedPeer: table.trusts(peer.address),
            requestID: exchange.requestID, keyIDHeader: upstream.keyIDHeader, keyID: keyID)
        let head = HTTPRequestHead(
            version: .http1_1, method: exchange.head.method, uri: upstream.target(for: exchange.head.uri, prefix: exchange.route.prefix),
            headers: headers)
        if expectsContinue, !exchange.requestEnded, !exchange.retried {
            context.writeAndFlush(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .continue))), promise: nil)
        }
        connection.channel.write(HTTPClientRequestPart.head(head), promise: nil)
        for part in exchange.pending { connection.channel.write(HTTPClientRequestPart.body(.byteBuffer(part)), promise: nil) }
        exchange.pending = []
        if exchange.requestEnded {
            sendEnd(exchange)
        } else {
            connection.channel.flush()
            if connection.channel.isWritable, machine.bodyWanted(true) { context.read() }
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

    func proxyBody(_ buffer: ByteBuffer, context: ChannelHandlerContext) {
        guard let exchange else { return }
        exchange.bodyBytes += buffer.readableBytes
        guard exchange.bodyBytes <= exchange.upstream.maxBodyBytes else {
            // A chunked body that outgrew the limit: already counted, never finished upstream.
            return failExchange(exchange, with: .bodyTooLarge, reason: "request body above the route's limit")
        }
        machine.streamed(now: context.eventLoop.now)
        guard let connection = exchange.connection else {
            exchange.pending.append(buffer)
            return
        }
        connection.channel.writeAndFlush(HTTPClientRequestPart.body(.byteBuffer(buffer)), promise: nil)
        if !connection.channel.isWritable { _ = machine.bodyWanted(false) }
    }

    func proxyEnd(context: ChannelHandlerContext) {
        guard let exchange else { return }
        exchange.requestEnded = true
        if exchange.connection != nil { sendEnd(exchange) }
    }

    private func sendEnd(_ exchange: ProxyExchange) {
        guard let connection = exchange.connection, !exchange.endForwarded else { return }
        exchange.endForwarded = true
        connection.channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
        if !exchange.responseStarted {
            let deadline = exchange.context.eventLoop.now + exchange.upstream.responseTimeout
            exchange.responseDeadline = deadline
            // Like the idle timer, one timer serves every request on the connection: it is
            // moved only when a deadline comes sooner than the one it is set for.
            if let timer = responseTimer, timer.deadline <= deadline { return }
            armResponseTimer(at: deadline, context: exchange.context)
        }
    }

    private func armResponseTimer(at deadline: NIODeadline, context: ChannelHandlerContext) {
        responseTimer?.task.cancel()
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        let task = context.eventLoop.scheduleTask(deadline: deadline) {
            loopBound.value.responseTimerFired(context: context)
        }
        responseTimer = (task, deadline)
    }

    private func responseTimerFired(context: ChannelHandlerContext) {
        responseTimer = nil
        guard let exchange, !exchange.responseStarted, let deadline = exchange.responseDeadline else { return }
        if context.eventLoop.now >= deadline {
            failExchange(exchange, with: .upstreamTimeout, reason: "upstream answered too slowly")
        } else {
            armResponseTimer(at: deadline, context: context)
        }
    }

    /// Ends an exchange that cannot finish: closes its upstream connection (never reused) and
    /// answers `problem` if the answer has not begun, else closes the client connection.
    func failExchange(_ exchange: ProxyExchange, with problem: Problem, reason: String) {
        let context = exchange.context
        shared.logger.warning(
            "\(reason)",
            metadata: ["request": "\(exchange.requestID)", "api": "\(exchange.route.name)", "upstream": "\(exchange.upstream.address)"]
        )
        self.exchange = nil
        if let connection = exchange.connection {
            connection.handler.delegate = nil
            connection.channel.close(promise: nil)
        }
        if exchange.responseStarted {
            machine.inactive()
            context.close(promise: nil)
        } else if problem == .upstreamUnavailable || problem == .upstreamTimeout {
            // The gateway answers for an upstream that failed.
            giveBackIfAsked(exchange)
            writeUpstreamFailure(problem, for: exchange)
        } else {
            // A body above the limit or a malformed one is the client's doing, and stays counted.
            writeProblem(problem, isHead: exchange.isHead, context: context)
        }
    }

    /// A `502` or `504` whose text says whether the request's unit was kept or given back.
    private func writeUpstreamFailure(_ problem: Problem, for exchange: ProxyExchange) {
        let body = exchange.upstream.giveBackOn5xx ? shared.givenBackProblems[problem] : nil
        writeProblem(problem, body: body, isHead: exchange.isHead, context: exchange.context)
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

    /// Whether an answer with `status` to the exchange's request has a body (RFC 9110
    /// section 6.4.1: not to `HEAD`, not `1xx`, `204` or `304`).
    static func answerHasBody(_ status: HTTPResponseStatus, to exchange: ProxyExchange) -> Bool {
        !exchange.isHead && status.code >= 200 && status.code != 204 && status.code != 304
    }

    static func isIdempotent(_ method: HTTPMethod) -> Bool {
        switch method {
        case .GET, .HEAD, .OPTIONS, .PUT, .DELETE, .TRACE: true
        default: false
        }
    }

    // MARK: UpstreamDelegate

    func upstreamReceived(_ part: HTTPClientResponsePart) {
        guard let exchange else { return }
        let context = exchange.context
        machine.streamed(now: context.eventLoop.now)
        switch part {
        case .head(let response):
            exchange.responseStarted = true
            exchange.upstreamKeepAlive = response.isKeepAlive
            if exchange.admission != nil, (500..<600).contains(response.status.code) { giveBackIfAsked(exchange) }
            // An HTTP/1.0 client knows no chunks: an answer of unknown length is sent as it
            // comes and ends when the connection closes (RFC 9112 section 6.3).
            var version = HTTPVersion.http1_1
            if requestIsHTTP10, !response.headers.contains(name: "content-length"), Self.answerHasBody(response.status, to: exchange) {
                machine.closeAfterAnswer()
                version = .http1_0
            }
            var headers = ProxyHeaders.answer(
                response.headers, rateLimitFields: exchange.rateLimitFields, requestID: exchange.requestID,
                close: machine.willStreamAnswer(), date: dateHeader.value(at: shared.clock.now))
            if version == .http1_0 {
                headers.remove(name: "transfer-encoding")
            } else if requestIsHTTP10, !headers.contains(name: "connection") {
                headers.add(name: "connection", value: "keep-alive")
            }
            // A streamed answer is counted and logged at its head, once, whether or not its
            // body arrives whole: the duration is the time to the answer's first byte.
            shared.monitor.answered(&observed, status: response.status, now: context.eventLoop.now, clock: shared.clock)
            // Flushed at the end of the upstream's read burst, or with the end.
            context.write(
                wrapOutboundOut(.head(HTTPResponseHead(version: version, status: response.status, headers: headers))), promise: nil)
        case .body(let buffer):
            guard !exchange.isHead else { return }
            context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
            if !context.channel.isWritable { exchange.connection?.handler.pauseReads() }
        case .end:
            self.exchange = nil
            if let connection = exchange.connection {
                // Reused only after a whole request and a whole keep-alive answer.
                if exchange.endForwarded && exchange.upstreamKeepAlive {
                    pool?.release(connection, upstream: exchange.upstream)
                } else {
                    connection.handler.delegate = nil
                    connection.channel.close(promise: nil)
                }
            }
            endAnswer(machine.willWriteAnswer(now: context.eventLoop.now), context: context)
        }
    }

    func upstreamReadComplete() {
        exchange?.context.flush()
    }

    func upstreamWritabilityChanged(_ isWritable: Bool) {
        guard let exchange, exchange.connection != nil, !exchange.requestEnded else { return }
        if machine.bodyWanted(isWritable) { exchange.context.read() }
    }

    func upstreamClosed(error: (any Error)?) {
        guard let exchange else { return }
        // A pooled connection the upstream closed while it idled fails the request sent on
        // it before one byte of an answer: send it once more on a new connection, if it can
        // be sent again as it was (an idempotent method, no body). See ``UpstreamConnection/mayRetry``.
        if let connection = exchange.connection, connection.mayRetry, !exchange.responseStarted, !exchange.retried,
            exchange.bodyBytes == 0, exchange.requestEnded, Self.isIdempotent(exchange.head.method)
        {
            exchange.retried = true
            exchange.connection = nil
            exchange.endForwarded = false
            exchange.responseDeadline = nil
            shared.logger.debug("retrying on a new upstream connection", metadata: ["request": "\(exchange.requestID)"])
            return connect(exchange, fresh: true)
        }
        exchange.connection = nil
        failExchange(
            exchange, with: .upstreamUnavailable, reason: error.map { "upstream failed: \($0)" } ?? "upstream closed the connection")
    }
}
