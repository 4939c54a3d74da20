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
/// - anything else echoes the request: method, target, header fields, and the body's
///   length (counted, never kept), one per line.
public final class UpstreamServer: Sendable {
    public let port: Int
    private let channel: any Channel
    private let state: Mutex<(connections: Int, requests: Int)>

    /// Connections accepted so far (keep-alive reuse shows as fewer connections than requests).
    public var connections: Int { state.withLock { $0.connections } }
    public var requests: Int { state.withLock { $0.requests } }

    private init(port: Int, channel: any Channel) {
        self.port = port
        self.channel = channel
        self.state = Mutex((0, 0))
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

    fileprivate func count(connection: Bool) {
        state.withLock { state in
            if connection { state.connections += 1 } else { state.requests += 1 }
        }
    }

    public func stop() async {
        try? await channel.close()
    }
}

private final class Counts: Sendable {
    let server = Mutex<UpstreamServer?>(nil)
    func connected() { server.withLock { $0 }?.count(connection: true) }
    func requested() { server.withLock { $0 }?.count(connection: false) }
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
            self.head = head
            bodyBytes = 0
        case .body(let buffer):
            bodyBytes += buffer.readableBytes
        case .end:
            guard let head else { return }
            respond(head, context: context)
        }
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

    func answer(status: HTTPResponseStatus, body: String, context: ChannelHandlerContext) {
        var headers = HTTPHeaders()
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
