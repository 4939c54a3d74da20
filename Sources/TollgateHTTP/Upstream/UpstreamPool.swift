import Logging
import NIOCore
import NIOPosix
import Synchronization

/// What an upstream connection tells the request it serves, on the event loop that both the
/// inbound connection and this one run on.
protocol UpstreamDelegate: AnyObject {
    /// The answer's head (a `1xx` head is an interim answer, a final one follows).
    func upstreamHead(_ head: MessageHead)
    /// Body data of the answer: slices of `buffer` at `spans` (its chunk framing removed).
    func upstreamBody(_ buffer: ByteBuffer, spans: [Range<Int>])
    func upstreamEnd()
    /// The end of a read burst: what was passed on is flushed once, not piece by piece.
    func upstreamReadComplete()
    func upstreamWritabilityChanged(_ isWritable: Bool)
    /// The connection closed or failed before the answer ended; `error` is `nil` for a
    /// plain close, a ``HTTPParseFailure`` for an answer that is no valid HTTP/1.1.
    func upstreamClosed(error: (any Error)?)
}

/// The one handler of an upstream connection: parses answers with llhttp and hands their
/// parts to the request it serves, and holds reads while that request's client cannot take
/// more (backpressure). Requests go out as bytes the gateway wrote (``ProxyHeaders``).
final class UpstreamHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    weak var delegate: (any UpstreamDelegate)?
    /// Called once when the connection closes, so the pool forgets it.
    var onClose: (() -> Void)?
    let parser: LLHTTPParser
    /// Whether bytes of an answer arrived since the connection was last given a request:
    /// a request that failed on it is sent again only if none did.
    var sawAnswerBytes = false
    /// Whether the upstream sent bytes after an answer's end: such a connection is not
    /// given another request.
    private(set) var sentTooMuch = false
    private var holdReads = false
    private var readPending = false
    private var context: ChannelHandlerContext?
    /// Bytes of an answer not yet parsed (the parser stops after each message).
    private var input = ByteBuffer()

    init(maximumHeadBytes: Int) {
        parser = LLHTTPParser(kind: .response, maximumHeadBytes: maximumHeadBytes, maximumFields: 1000)
    }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }

    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    /// A request is about to go out: note whether its answer can have a body.
    func expectAnswer(toHEAD: Bool) {
        sawAnswerBytes = false
        parser.answersHEAD = toHEAD
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = unwrapInboundIn(data)
        sawAnswerBytes = true
        if input.readableBytes == 0 {
            input = buffer
        } else {
            input.writeBuffer(&buffer)
        }
        parse()
    }

    private func parse() {
        while let delegate, input.readableBytes > 0 {
            let (consumed, stop) = parser.execute(input)
            if parser.takeHead() { delegate.upstreamHead(parser.head) }
            if !parser.bodySpans.isEmpty { delegate.upstreamBody(input, spans: parser.bodySpans) }
            input.moveReaderIndex(forwardBy: consumed)
            switch stop {
            case .endOfInput, .head:
                continue
            case .message, .upgrade:
                // An interim (1xx) answer: its final answer follows on.
                if parser.head.status >= 100 && parser.head.status < 200 { continue }
                // One answer per request: anything after it is not for the request served.
                if input.readableBytes > 0 { sentTooMuch = true }
                input = ByteBuffer()
                delegate.upstreamEnd()
                return
            case .failed(let failure):
                self.delegate = nil
                delegate.upstreamClosed(error: failure)
                context?.close(promise: nil)
                return
            }
        }
        if input.readableBytes == 0 { input = ByteBuffer() }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        delegate?.upstreamReadComplete()
        context.fireChannelReadComplete()
    }

    func read(context: ChannelHandlerContext) {
        if holdReads {
            readPending = true
        } else {
            context.read()
        }
    }

    /// Stops reading the upstream until ``resumeReads()``.
    func pauseReads() { holdReads = true }

    func resumeReads() {
        holdReads = false
        if readPending, let context {
            readPending = false
            context.read()
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        delegate?.upstreamWritabilityChanged(context.channel.isWritable)
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        let delegate = self.delegate
        self.delegate = nil
        onClose?()
        onClose = nil
        if let delegate {
            // An answer delimited by the close ends here; anything else was cut short.
            switch parser.finish() {
            case .message: delegate.upstreamEnd()
            case .endOfInput: delegate.upstreamClosed(error: nil)
            case .failed(let failure): delegate.upstreamClosed(error: failure)
            case .head, .upgrade: delegate.upstreamClosed(error: nil)
            }
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        let delegate = self.delegate
        self.delegate = nil
        delegate?.upstreamClosed(error: error)
        context.close(promise: nil)
    }
}

/// One connection to an upstream, with the handler that speaks for it.
final class UpstreamConnection {
    let channel: any Channel
    let handler: UpstreamHandler
    /// Requests given this connection so far; above 1, it came from the pool, and the
    /// upstream may have closed it while it idled.
    var uses = 0

    init(channel: any Channel, handler: UpstreamHandler) {
        self.channel = channel
        self.handler = handler
    }

    /// Whether a request that failed on this connection may be sent once more on a new one:
    /// only if the connection came from the pool (the upstream may have closed it while it
    /// idled) and not one byte of an answer arrived (so the upstream never took it up), as
    /// nginx's `proxy_next_upstream error` and HAProxy's `retry-on conn-failure` do. A
    /// malformed or oversized answer is never a reason to send a request again.
    var mayRetry: Bool { uses > 1 && !handler.sawAnswerBytes }
}

/// Idle keep-alive connections to upstreams, for one event loop. Connections are opened on
/// that loop, so a request and its upstream connection never cross threads.
///
/// Only ever touched on its event loop (hence `@unchecked Sendable`: the pools are found
/// through a shared table, then used on their own loop alone).
final class UpstreamPool: @unchecked Sendable {
    let eventLoop: any EventLoop
    private var idle: [String: [UpstreamConnection]] = [:]
    /// Connections opened so far, for tests and logs.
    private(set) var opened = 0

    init(eventLoop: any EventLoop, connector: UpstreamConnector) {
        self.eventLoop = eventLoop
        self.connector = connector
    }

    /// An idle connection to `upstream`, if one is kept (taken at once: no future, no callback).
    func takeIdle(_ upstream: Upstream) -> UpstreamConnection? {
        eventLoop.preconditionInEventLoop()
        while let connection = idle[upstream.poolKey]?.popLast() {
            if connection.channel.isActive {
                connection.uses += 1
                return connection
            }
        }
        return nil
    }

    /// How connections are made: a TCP connection by default; tests connect in process.
    let connector: UpstreamConnector

    /// A new connection to `upstream`.
    func open(_ upstream: Upstream, maximumHeadBytes: Int) -> EventLoopFuture<UpstreamConnection> {
        eventLoop.preconditionInEventLoop()
        opened += 1
        return connector.connect(upstream, on: eventLoop, handler: UpstreamHandler(maximumHeadBytes: maximumHeadBytes))
            .flatMapThrowing { [weak self] channel in
                let connection = UpstreamConnection(
                    channel: channel, handler: try channel.pipeline.syncOperations.handler(type: UpstreamHandler.self))
                connection.uses = 1
                // Set once for the connection's life rather than on every release: an idle
                // connection the upstream closes leaves the pool (a busy one is not in it).
                let key = upstream.poolKey
                connection.handler.onClose = { [weak connection] in
                    guard let self, let connection else { return }
                    self.idle[key]?.removeAll { $0 === connection }
                }
                return connection
            }
    }

    /// Keeps `connection` for the next request to `upstream`, or closes it if enough are idle.
    func release(_ connection: UpstreamConnection, upstream: Upstream) {
        eventLoop.preconditionInEventLoop()
        connection.handler.delegate = nil
        connection.handler.resumeReads()
        guard connection.channel.isActive else { return connection.channel.close(promise: nil) }
        // One lookup: the list is changed in place.
        if !idle[upstream.poolKey, default: []].append(connection, ifBelow: upstream.maxIdleConnections) {
            connection.channel.close(promise: nil)
        }
    }
}

extension Array {
    /// Appends `element` if fewer than `limit` are held; whether it did.
    fileprivate mutating func append(_ element: Element, ifBelow limit: Int) -> Bool {
        guard count < limit else { return false }
        append(element)
        return true
    }
}

/// How an upstream connection is made, given its one handler.
struct UpstreamConnector: Sendable {
    let connect: @Sendable (Upstream, any EventLoop, UpstreamHandler) -> EventLoopFuture<any Channel>

    func connect(_ upstream: Upstream, on eventLoop: any EventLoop, handler: UpstreamHandler) -> EventLoopFuture<any Channel> {
        connect(upstream, eventLoop, handler)
    }

    /// A TCP connection from the event loop's own thread.
    static let tcp = UpstreamConnector { upstream, eventLoop, handler in
        let handler = NIOLoopBound(handler, eventLoop: eventLoop)
        return ClientBootstrap(group: eventLoop)
            .connectTimeout(upstream.connectTimeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(handler.value) }
            }
            .connect(host: upstream.host, port: upstream.port)
    }
}

/// The pools of every event loop, made on first use.
final class UpstreamPools: Sendable {
    private let pools = Mutex<[ObjectIdentifier: UpstreamPool]>([:])
    let logger: Logger
    let connector: UpstreamConnector

    init(logger: Logger, connector: UpstreamConnector = .tcp) {
        self.logger = logger
        self.connector = connector
    }

    /// The pool of `eventLoop` (a handler looks it up once per connection).
    func pool(for eventLoop: any EventLoop) -> UpstreamPool {
        pools.withLock { pools in
            if let pool = pools[ObjectIdentifier(eventLoop)] { return pool }
            let pool = UpstreamPool(eventLoop: eventLoop, connector: connector)
            pools[ObjectIdentifier(eventLoop)] = pool
            return pool
        }
    }
}
