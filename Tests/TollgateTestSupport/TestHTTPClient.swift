import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix

/// A response as tests read it.
public struct TestResponse: Sendable {
    public var status: Int
    public var headers: HTTPHeaders
    public var body: String

    public func header(_ name: String) -> String? { headers.first(name: name) }

    /// The `code` member of a problem+json body.
    public var problemCode: String? {
        guard let range = body.range(of: "\"code\":\"") else { return nil }
        return String(body[range.upperBound...].prefix { $0 != "\"" })
    }
}

/// One keep-alive HTTP/1.1 connection on NIO's client codec, sending targets verbatim (no
/// URL normalization, unlike a full client), so that tests can send paths with tricks.
public final class TestHTTPConnection {
    private let outbound: NIOAsyncChannelOutboundWriter<HTTPClientRequestPart>
    private var inbound: NIOAsyncChannelInboundStream<HTTPClientResponsePart>.AsyncIterator

    init(outbound: NIOAsyncChannelOutboundWriter<HTTPClientRequestPart>, inbound: NIOAsyncChannelInboundStream<HTTPClientResponsePart>) {
        self.outbound = outbound
        self.inbound = inbound.makeAsyncIterator()
    }

    /// Opens a connection, runs `body` with it and closes it.
    public static func with<T>(port: Int, host: String = "127.0.0.1", _ body: (TestHTTPConnection) async throws -> T) async throws -> T {
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(host: host, port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    return try NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>(wrappingChannelSynchronously: channel)
                }
            }
        return try await channel.executeThenClose { inbound, outbound in
            try await body(TestHTTPConnection(outbound: outbound, inbound: inbound))
        }
    }

    public func write(_ method: HTTPMethod = .GET, _ target: String, headers: [(String, String)] = [], body: String? = nil) async throws {
        var fields = HTTPHeaders(headers)
        if !fields.contains(name: "host") { fields.add(name: "host", value: "localhost") }
        if let body { fields.replaceOrAdd(name: "content-length", value: String(body.utf8.count)) }
        try await outbound.write(.head(HTTPRequestHead(version: .http1_1, method: method, uri: target, headers: fields)))
        if let body { try await outbound.write(.body(.byteBuffer(ByteBuffer(string: body)))) }
        try await outbound.write(.end(nil))
    }

    /// Reads the next whole response.
    public func read() async throws -> TestResponse {
        var response: TestResponse?
        var body = ByteBuffer()
        while let part = try await inbound.next() {
            switch part {
            case .head(let head):
                response = TestResponse(status: Int(head.status.code), headers: head.headers, body: "")
            case .body(var chunk):
                body.writeBuffer(&chunk)
            case .end:
                guard var done = response else { throw TestHTTPError.noResponse }
                done.body = String(buffer: body)
                return done
            }
        }
        throw TestHTTPError.noResponse
    }

    /// Sends a request with a body of `bodyBytes` bytes written in 64 KiB chunks as the
    /// connection takes them, never held whole.
    public func writeStreaming(_ method: HTTPMethod, _ target: String, headers: [(String, String)] = [], bodyBytes: Int) async throws {
        var fields = HTTPHeaders(headers)
        if !fields.contains(name: "host") { fields.add(name: "host", value: "localhost") }
        fields.replaceOrAdd(name: "content-length", value: String(bodyBytes))
        try await outbound.write(.head(HTTPRequestHead(version: .http1_1, method: method, uri: target, headers: fields)))
        let chunk = ByteBuffer(repeating: UInt8(ascii: "y"), count: 64 * 1024)
        var left = bodyBytes
        while left > 0 {
            let size = min(left, chunk.readableBytes)
            try await outbound.write(.body(.byteBuffer(chunk.getSlice(at: 0, length: size)!)))
            left -= size
        }
        try await outbound.write(.end(nil))
    }

    /// Reads the next response, counting its body's bytes rather than keeping them; the
    /// body is kept only if it is short (an error's problem, an echo).
    public func readCounting() async throws -> (response: TestResponse, bodyBytes: Int) {
        var response: TestResponse?
        var count = 0
        var kept = ByteBuffer()
        while let part = try await inbound.next() {
            switch part {
            case .head(let head):
                response = TestResponse(status: Int(head.status.code), headers: head.headers, body: "")
            case .body(var chunk):
                count += chunk.readableBytes
                if kept.readableBytes < 64 * 1024 { kept.writeBuffer(&chunk) }
            case .end:
                guard var done = response else { throw TestHTTPError.noResponse }
                done.body = String(buffer: kept)
                return (done, count)
            }
        }
        throw TestHTTPError.noResponse
    }

    /// Sends one request and reads its response.
    public func send(_ method: HTTPMethod = .GET, _ target: String, headers: [(String, String)] = [], body: String? = nil) async throws
        -> TestResponse
    {
        try await write(method, target, headers: headers, body: body)
        return try await read()
    }
}

public enum TestHTTPError: Error {
    case noResponse
}

/// One request on its own connection.
public func httpRequest(
    port: Int,
    _ method: HTTPMethod = .GET,
    _ target: String,
    headers: [(String, String)] = []
) async throws -> TestResponse {
    try await TestHTTPConnection.with(port: port) { connection in try await connection.send(method, target, headers: headers) }
}

/// Sends raw bytes and returns everything the server sends back until it closes the
/// connection (or `timeout` passes), for requests no HTTP client would write.
public func rawExchange(port: Int, _ request: String, timeout: TimeAmount = .seconds(10)) async throws -> String {
    let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        .connect(host: "127.0.0.1", port: port) { channel in
            channel.eventLoop.makeCompletedFuture {
                try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
            }
        }
    let timer = channel.channel.eventLoop.scheduleTask(in: timeout) { channel.channel.close(promise: nil) }
    defer { timer.cancel() }
    return try await channel.executeThenClose { inbound, outbound in
        do {
            try await outbound.write(ByteBuffer(string: request))
        } catch let error as ChannelError where error == .ioOnClosedChannel || error == .alreadyClosed {
            // The server closed first (an idle timeout that fired before a loaded machine got
            // to the write): whatever it sent before closing is the answer.
        } catch let error as IOError where error.errnoCode == EPIPE || error.errnoCode == ECONNRESET {
            // The same, seen by the socket.
        }
        var received = ByteBuffer()
        do {
            for try await var chunk in inbound { received.writeBuffer(&chunk) }
        } catch {}
        return String(buffer: received)
    }
}
