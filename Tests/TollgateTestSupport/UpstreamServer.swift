import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// A small HTTP/1.1 upstream for the proxy tests, on a free loopback port:
/// - `/download?bytes=N` streams N bytes, as fast as the reader takes them and no faster;
/// - `/slow?ms=N` answers after N milliseconds;
/// - `/status/N` answers status N;
/// - `/drop-next` answers, then closes its connection on the next request without an answer
///   (an upstream closing a kept-alive connection just as a request is sent on it);
/// - `/huge-header` answers with a 200 KB header field, `/garbage` with bytes that are no
///   HTTP answer (answers a gateway must refuse, after sending the request once);
/// - `/chunked` answers `chunked` in chunked encoding, without a length;
/// - `/cache-public` answers with `Cache-Control: public, max-age=600` and `CDN-Cache-Control`;
/// - anything else echoes the request: method, target, header fields, and the body's
///   length (counted, never kept), one per line.
///
/// No answer carries `Date`.
public final class UpstreamServer: Sendable {
    public let port: Int
    private let channel: any Channel
    private let state: Mutex<Tally>

    struct Tally {
        var connections = 0
        var requests = 0
        var ended = 0
        var closed = 0
        var waiting = 0
    }

    /// Connections accepted so far (keep-alive reuse shows as fewer connections than requests).
    public var connections: Int { state.withLock { $0.connections } }
    /// Request heads received so far.
    public var requests: Int { state.withLock { $0.requests } }
    /// Requests received whole, their ends included.
    public var ended: Int { state.withLock { $0.ended } }
    /// Connections closed so far.
    public var closed: Int { state.withLock { $0.closed } }
    /// Open connections holding a request whose end has not come: an upstream waiting for
    /// the rest of a body.
    public var waiting: Int { state.withLock { $0.waiting } }

    private init(port: Int, channel: any Channel) {
        self.port = port
        self.channel = channel
        self.state = Mutex(Tally())
    }

    public static func start() async throws -> UpstreamServer {
        let counts = Counts()
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                counts.connected()
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(UpstreamTestHandler(counts: counts))
                }
            }
            .bind(host: "127.0.0.1", port: 0)
            .get()
        let server = UpstreamServer(port: channel.localAddress?.port ?? 0, channel: channel)
        counts.server.withLock { $0 = server }
        return server
    }

    fileprivate func count(_ event: Counts.Event) {
        state.withLock { state in
            switch event {
            case .connected: state.connections += 1
            case .requested: state.requests += 1
            case .ended: state.ended += 1
            case .closed: state.closed += 1
            case .waiting: state.waiting += 1
            case .doneWaiting: state.waiting -= 1
            }
        }
    }

    public func stop() async {
        try? await channel.close()
    }
}

private final class Counts: Sendable {
    enum Event { case connected, requested, ended, closed, waiting, doneWaiting }
    let server = Mutex<UpstreamServer?>(nil)
    func connected() { count(.connected) }
    func requested() { count(.requested) }
    func count(_ event: Event) { server.withLock { $0 }?.count(event) }
}

private final class UpstreamTestHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let counts: Counts
    var head: HTTPRequestHead?
    var bodyBytes = 0
    var downloadLeft = 0
    var dropNext = false
    let chunk = ByteBuffer(repeating: UInt8(ascii: "x"), count: 64 * 1024)

    init(counts: Counts) { self.counts = counts }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            if dropNext {
                context.close(promise: nil)
                return
            }
            counts.requested()
            counts.count(.waiting)
            self.head = head
            bodyBytes = 0
        case .body(let buffer):
            bodyBytes += buffer.readableBytes
        case .end:
            guard let head else { return }
            self.head = nil
            counts.count(.ended)
            counts.count(.doneWaiting)
            respond(head, context: context)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if head != nil { counts.count(.doneWaiting) }
        counts.count(.closed)
        context.fireChannelInactive()
    }

    func query(_ name: String, in uri: String) -> Int? {
        guard let range = uri.range(of: "\(name)=") else { return nil }
        return Int(uri[range.upperBound...].prefix { $0.isNumber })
    }

    func respond(_ head: HTTPRequestHead, context: ChannelHandlerContext) {
        let uri = head.uri
        if uri.hasPrefix("/download") || uri.contains("/download?") {
            downloadLeft = query("bytes", in: uri) ?? 0
            var headers = HTTPHeaders()
            headers.add(name: "content-length", value: String(downloadLeft))
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers))), promise: nil)
            if downloadLeft == 0 { context.write(wrapOutboundOut(.end(nil)), promise: nil) }
            pump(context: context)
            return
        }
        if uri.contains("/slow?") {
            let delay = query("ms", in: uri) ?? 0
            let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            context.eventLoop.scheduleTask(in: .milliseconds(Int64(delay))) {
                let (handler, context) = loopBound.value
                handler.answer(status: .ok, body: "slow", context: context)
            }
            return
        }
        if uri.contains("/drop-next") { dropNext = true }
        if uri.contains("/huge-header") {
            var headers = HTTPHeaders()
            headers.add(name: "x-huge", value: String(repeating: "h", count: 200 * 1024))
            headers.add(name: "content-length", value: "0")
            context.writeAndFlush(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers))), promise: nil)
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
            return
        }
        if uri.contains("/garbage") {
            // Below the HTTP encoder: bytes no HTTP/1.1 answer starts with.
            let encoder = try? context.pipeline.syncOperations.context(handlerType: HTTPResponseEncoder.self)
            encoder?.writeAndFlush(NIOAny(ByteBuffer(string: "NOT HTTP AT ALL\r\n\r\n")), promise: nil)
            return
        }
        if uri.contains("/chunked") {
            var headers = HTTPHeaders()
            headers.add(name: "transfer-encoding", value: "chunked")
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers))), promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: "chun")))), promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: "ked")))), promise: nil)
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
            return
        }
        if uri.contains("/cache-public") {
            answer(
                status: .ok, body: "cacheable", extra: [("cache-control", "public, max-age=600"), ("cdn-cache-control", "max-age=600")],
                context: context)
            return
        }
        if let range = uri.range(of: "/status/") {
            let code = Int(uri[range.upperBound...].prefix { $0.isNumber }) ?? 500
            answer(status: HTTPResponseStatus(statusCode: code), body: "status \(code)", context: context)
            return
        }
        var text = "\(head.method.rawValue) \(uri)\n"
        for field in head.headers { text += "\(field.name.lowercased()): \(field.value)\n" }
        text += "body-bytes: \(bodyBytes)\n"
        answer(status: .ok, body: text, context: context)
    }

    func answer(status: HTTPResponseStatus, body: String, extra: [(String, String)] = [], context: ChannelHandlerContext) {
        var headers = HTTPHeaders(extra)
        headers.add(name: "content-length", value: String(body.utf8.count))
        headers.add(name: "content-type", value: "text/plain")
        headers.add(name: "x-upstream", value: "yes")
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: body)))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
    }

    /// Writes the download while the socket takes it; resumes when it drains.
    func pump(context: ChannelHandlerContext) {
        while downloadLeft > 0 && context.channel.isWritable {
            let size = min(downloadLeft, chunk.readableBytes)
            downloadLeft -= size
            context.write(wrapOutboundOut(.body(.byteBuffer(chunk.getSlice(at: 0, length: size)!))), promise: nil)
            if downloadLeft == 0 { context.write(wrapOutboundOut(.end(nil)), promise: nil) }
        }
        context.flush()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable && downloadLeft > 0 { pump(context: context) }
        context.fireChannelWritabilityChanged()
    }
}
