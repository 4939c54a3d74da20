import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// What an upstream connection tells the request it serves, on the event loop that both the
/// inbound connection and this one run on.
protocol UpstreamDelegate: AnyObject {
    func upstreamReceived(_ part: HTTPClientResponsePart)
    /// The end of a read burst: what was passed on is flushed once, not part by part.
    func upstreamReadComplete()
    func upstreamWritabilityChanged(_ isWritable: Bool)
    func upstreamClosed(error: (any Error)?)
}

/// The last handler of an upstream connection: hands response parts to the request it
/// serves, and holds reads while that request's client cannot take more (backpressure).
final class UpstreamHandler: ChannelDuplexHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundIn = HTTPClientRequestPart
    typealias OutboundOut = HTTPClientRequestPart

    weak var delegate: (any UpstreamDelegate)?
    /// Called once when the connection closes, so the pool forgets it.
    var onClose: (() -> Void)?
    private var holdReads = false
    private var readPending = false
    private var context: ChannelHandlerContext?

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }

    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        delegate?.upstreamReceived(unwrapInboundIn(data))
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
        delegate?.upstreamClosed(error: nil)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        let delegate = self.delegate
        self.delegate = nil
        delegate?.upstreamClosed(error: error)
        context.close(promise: nil)
    }
}

/// The first handler of an upstream connection: notes whether any byte of an answer came,
/// which decides whether a request that failed on it may be sent again.
final class UpstreamBytesSeen: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    /// Whether bytes arrived since the connection was last given a request.
    var seen = false

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        seen = true
        context.fireChannelRead(data)
    }
}

/// One connection to an upstream, with the handler that speaks for it.
final class UpstreamConnection {
    let channel: any Channel
    let handler: UpstreamHandler
    let bytesSeen: UpstreamBytesSeen
    /// Requests given this connection so far; above 1, it came from the pool, and the
    /// upstream may have closed it while it idled.
    var uses = 0

    init(channel: any Channel, handler: UpstreamHandler, bytesSeen: UpstreamBytesSeen) {
        self.channel = channel
        self.handler = handler
        self.bytesSeen = bytesSeen
    }

    /// Whether a request that failed on this connection may be sent once more on a new one:
    /// only if the connection came from the pool (the upstream may have closed it while it
    /// idled) and not one byte of an answer arrived (so the upstream never took it up), as
    /// nginx's `proxy_next_upstream error` and HAProxy's `retry-on conn-failure` do. A
    /// malformed or oversized answer is never a reason to send a request again.
    var mayRetry: Bool { uses > 1 && !bytesSeen.seen }
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

    init(eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
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

    /// A new connection to `upstream`. Its request head is encoded without NIO's outbound
    /// header validation: every field forwarded was parsed (and so checked) by the inbound
    /// decoder, and the gateway's own fields are made of checked parts (see ``ProxyHeaders``).
    func open(_ upstream: Upstream) -> EventLoopFuture<UpstreamConnection> {
        eventLoop.preconditionInEventLoop()
        opened += 1
        return ClientBootstrap(group: eventLoop)
            .connectTimeout(upstream.connectTimeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(UpstreamBytesSeen())
                    try channel.pipeline.syncOperations.addHTTPClientHandlers(enableOutboundHeaderValidation: false)
                    try channel.pipeline.syncOperations.addHandler(UpstreamHandler())
                }
            }
            .connect(host: upstream.host, port: upstream.port)
            .flatMapThrowing { [weak self] channel in
                let connection = UpstreamConnection(
                    channel: channel, handler: try channel.pipeline.syncOperations.handler(type: UpstreamHandler.self),
                    bytesSeen: try channel.pipeline.syncOperations.handler(type: UpstreamBytesSeen.self))
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

/// The pools of every event loop, made on first use.
final class UpstreamPools: Sendable {
    private let pools = Mutex<[ObjectIdentifier: UpstreamPool]>([:])
    let logger: Logger

    init(logger: Logger) { self.logger = logger }

    /// The pool of `eventLoop` (a handler looks it up once per connection).
    func pool(for eventLoop: any EventLoop) -> UpstreamPool {
        pools.withLock { pools in
            if let pool = pools[ObjectIdentifier(eventLoop)] { return pool }
            let pool = UpstreamPool(eventLoop: eventLoop)
            pools[ObjectIdentifier(eventLoop)] = pool
            return pool
        }
    }
}
