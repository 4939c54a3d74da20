import Foundation
import NIOCore
import NIOEmbedded
import Synchronization
import Testing
import TollgateCore
import TollgateTestSupport

@testable import TollgateHTTP

/// The connection handler on an `EmbeddedChannel`, its upstream connections in process on the
/// same loop: the test plays the client and the upstream, byte by byte, and moves the event
/// loop's clock by hand.
final class GatewayHarness: @unchecked Sendable {
    let loop = EmbeddedEventLoop()
    let client: EmbeddedChannel
    let store = MemoryKeyStore()
    private let opened = Opened()

    /// The upstream connections the gateway opened, in order.
    final class Opened: @unchecked Sendable {
        let channels = Mutex<[EmbeddedChannel]>([])
    }

    init(idleTimeout: TimeAmount = .seconds(60), responseTimeout: TimeAmount = .seconds(30), maxBodyBytes: Int = 1000) throws {
        var configuration = DataPlaneConfiguration()
        configuration.idleTimeout = idleTimeout
        let upstream = Upstream(host: "upstream.test", port: 8080, responseTimeout: responseTimeout, maxBodyBytes: maxBodyBytes)
        configuration.routes = LiveRoutes(
            RouteTable(routes: [Route(name: "orders", prefix: "v1/orders", action: .upstream(upstream))] + Route.defaults))
        let loop = self.loop
        let opened = self.opened
        let connector = UpstreamConnector { _, _, handler in
            let channel = EmbeddedChannel(handler: handler, loop: loop)
            _ = channel.connect(to: try! SocketAddress(ipAddress: "10.0.0.9", port: 8080))
            opened.channels.withLock { $0.append(channel) }
            return loop.makeSucceededFuture(channel)
        }
        let shared = DataPlaneShared(
            store: store, clock: SystemWallClock(), configuration: configuration, logger: quietLogger, upstreams: connector)
        client = EmbeddedChannel(loop: loop)
        try DataPlaneServer<MemoryKeyStore, SystemWallClock>.configure(client.pipeline.syncOperations, shared: shared)
        try client.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
    }

    /// The client sends `text`.
    func send(_ text: String) throws {
        try client.writeInbound(ByteBuffer(string: text))
        loop.run()
    }

    /// What the client has received since last asked.
    func received() throws -> String {
        var text = ""
        while let buffer = try client.readOutbound(as: ByteBuffer.self) { text += String(buffer: buffer) }
        return text
    }

    var upstreams: [EmbeddedChannel] { opened.channels.withLock { $0 } }

    /// What upstream connection `index` has received since last asked.
    func upstreamReceived(_ index: Int = 0) throws -> String {
        guard index < upstreams.count else { return "" }
        var text = ""
        while let buffer = try upstreams[index].readOutbound(as: ByteBuffer.self) { text += String(buffer: buffer) }
        return text
    }

    /// Upstream connection `index` answers `text`.
    func upstreamSends(_ text: String, _ index: Int = 0) throws {
        try upstreams[index].writeInbound(ByteBuffer(string: text))
        loop.run()
    }
}

@Suite struct GatewayConnectionTests {
    static let get = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"

    @Test func theIdleTimerFollowsTheLoopsClock() throws {
        let harness = try GatewayHarness(idleTimeout: .seconds(60))
        harness.loop.advanceTime(by: .seconds(59))
        #expect(harness.client.isActive)
        harness.loop.advanceTime(by: .seconds(2))
        #expect(!harness.client.isActive)
    }

    @Test func answersWaitWhileTheSocketIsFullAndFollowWhenItDrains() throws {
        let harness = try GatewayHarness()
        harness.client.isWritable = false
        harness.client.pipeline.fireChannelWritabilityChanged()
        try harness.send(Self.get + Self.get)
        #expect(try harness.received().isEmpty, "nothing is answered while the socket cannot take it")
        harness.client.isWritable = true
        harness.client.pipeline.fireChannelWritabilityChanged()
        let text = try harness.received()
        #expect(text.components(separatedBy: "HTTP/1.1 200 OK").count - 1 == 2)
        #expect(text.contains("cache-control: no-store"))
    }

    @Test func aClientThatNeverDrainsItsAnswersIsClosedWhenIdle() throws {
        let harness = try GatewayHarness(idleTimeout: .seconds(10))
        try harness.send(Self.get)
        harness.client.isWritable = false
        harness.client.pipeline.fireChannelWritabilityChanged()
        try harness.send(Self.get)
        harness.loop.advanceTime(by: .seconds(11))
        #expect(!harness.client.isActive)
    }

    /// A pipelined burst is answered in order, in one write: one flush per read.
    @Test func aPipelinedBurstIsAnsweredInOrderInOneWrite() async throws {
        let harness = try GatewayHarness()
        try await makeKey(in: harness.store, secret: "k")
        try harness.send(
            "GET /api1 HTTP/1.1\r\nHost: x\r\ntoken: k\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\n\r\n"
                + "GET /api2 HTTP/1.1\r\nHost: x\r\ntoken: k\r\n\r\n")
        var writes: [String] = []
        while let buffer = try harness.client.readOutbound(as: ByteBuffer.self) { writes.append(String(buffer: buffer)) }
        #expect(writes.count == 1, "\(writes.count) writes")
        let text = writes.joined()
        let first = try #require(text.range(of: "API1")), second = try #require(text.range(of: "not_found"))
        let third = try #require(text.range(of: "API2"))
        #expect(first.upperBound < second.lowerBound && second.upperBound < third.lowerBound, "in request order")
    }

    @Test func aForwardedRequestGoesUpRewrittenAndItsAnswerComesBack() async throws {
        let harness = try GatewayHarness()
        let key = try await makeKey(in: harness.store, limits: ["10/day"], secret: "k").key
        try harness.send("POST /v1/orders/5?x=1 HTTP/1.1\r\nHost: gw\r\ntoken: k\r\nContent-Length: 5\r\n\r\nhello")
        let sent = try harness.upstreamReceived()
        #expect(sent.hasPrefix("POST /v1/orders/5?x=1 HTTP/1.1\r\n"), "\(sent)")
        #expect(!sent.contains("token:") && !sent.contains("k\r\n"), "the key never goes up: \(sent)")
        #expect(sent.lowercased().contains("x-tollgate-key-id: \(key.id.rawValue.lowercased())\r\n"))
        #expect(sent.contains("content-length: 5\r\n"))
        #expect(sent.hasSuffix("\r\n\r\nhello"))
        try harness.upstreamSends("HTTP/1.1 201 Created\r\nContent-Length: 2\r\nX-Up: yes\r\n\r\nok")
        let answer = try harness.received()
        #expect(answer.hasPrefix("HTTP/1.1 201 Created\r\n"), "\(answer)")
        #expect(answer.contains("x-up: yes\r\n") || answer.contains("X-Up: yes\r\n"))
        #expect(answer.contains("ratelimit: \"day\";r=9"))
        #expect(answer.hasSuffix("\r\n\r\nok"))
        #expect(harness.client.isActive)
    }

    /// An answer that begins before the request's body has ended closes the connection after
    /// it; the rest of the body is read away, never forwarded.
    @Test func anEarlyAnswerClosesAfterTheBodyIsReadAway() async throws {
        let harness = try GatewayHarness()
        try await makeKey(in: harness.store, secret: "k")
        try harness.send("POST /v1/orders/1 HTTP/1.1\r\nHost: gw\r\ntoken: k\r\nContent-Length: 10\r\n\r\nabc")
        _ = try harness.upstreamReceived()
        try harness.upstreamSends("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        let answer = try harness.received()
        #expect(answer.hasPrefix("HTTP/1.1 200 OK") && answer.contains("connection: close"), "\(answer)")
        try harness.send("defghij")
        #expect(try harness.upstreamReceived().isEmpty, "the rest of the body is not forwarded")
        #expect(!harness.client.isActive, "closed once the body has been read away")
    }

    /// The upstream closing mid-body, before any answer: `502`, and the client connection
    /// closes (its body cannot be finished).
    @Test func anUpstreamClosingMidBodyIs502() async throws {
        let harness = try GatewayHarness()
        try await makeKey(in: harness.store, secret: "k")
        try harness.send("POST /v1/orders/1 HTTP/1.1\r\nHost: gw\r\ntoken: k\r\nContent-Length: 10\r\n\r\nabc")
        _ = try harness.upstreamReceived()
        _ = try? harness.upstreams[0].close().wait()
        harness.loop.run()
        let answer = try harness.received()
        #expect(answer.hasPrefix("HTTP/1.1 502 ") && answer.contains("upstream_unavailable"), "\(answer)")
        #expect(answer.contains("connection: close"))
    }

    /// `Expect: 100-continue`: the gateway says `100 Continue` once the request is admitted
    /// and its upstream reached; the upstream never sees `Expect`.
    @Test func aContinueIsAnsweredByTheGatewayOnceTheRequestIsAdmitted() async throws {
        let harness = try GatewayHarness()
        try await makeKey(in: harness.store, secret: "k")
        try harness.send("PUT /v1/orders/1 HTTP/1.1\r\nHost: gw\r\ntoken: k\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        #expect(try harness.received() == "HTTP/1.1 100 Continue\r\n\r\n")
        let head = try harness.upstreamReceived()
        #expect(!head.lowercased().contains("expect"), "\(head)")
        try harness.send("hello")
        #expect(try harness.upstreamReceived() == "hello")
        try harness.upstreamSends("HTTP/1.1 204 No Content\r\n\r\n")
        #expect(try harness.received().hasPrefix("HTTP/1.1 204 No Content"))

        // A refused request gets no 100 Continue: its refusal, then the connection closes
        // once the body it would have sent is read away.
        try harness.send("PUT /v1/orders/1 HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        let refused = try harness.received()
        #expect(refused.hasPrefix("HTTP/1.1 401 ") && !refused.contains("100 Continue"), "\(refused)")
    }

    /// While the upstream cannot take more, the client's body is not read on; it flows
    /// again when the upstream drains.
    @Test func aFullUpstreamHoldsTheClientsBody() async throws {
        let harness = try GatewayHarness(maxBodyBytes: 100_000)
        try await makeKey(in: harness.store, secret: "k")
        try harness.send("POST /v1/orders/1 HTTP/1.1\r\nHost: gw\r\ntoken: k\r\nContent-Length: 6\r\n\r\nab")
        #expect(try harness.upstreamReceived().hasSuffix("\r\n\r\nab"))
        harness.upstreams[0].isWritable = false
        harness.upstreams[0].pipeline.fireChannelWritabilityChanged()
        try harness.send("cd")
        #expect(try harness.upstreamReceived().isEmpty, "held while the upstream is full")
        harness.upstreams[0].isWritable = true
        harness.upstreams[0].pipeline.fireChannelWritabilityChanged()
        harness.loop.run()
        #expect(try harness.upstreamReceived() == "cd")
        try harness.send("ef")
        #expect(try harness.upstreamReceived() == "ef")
    }

    /// An upstream that does not begin its answer in time: `504`, on the loop's clock.
    @Test func aSlowUpstreamIs504OnTheLoopsClock() async throws {
        let harness = try GatewayHarness(responseTimeout: .seconds(5))
        try await makeKey(in: harness.store, secret: "k")
        try harness.send("GET /v1/orders/1 HTTP/1.1\r\nHost: gw\r\ntoken: k\r\n\r\n")
        _ = try harness.upstreamReceived()
        harness.loop.advanceTime(by: .seconds(4))
        #expect(try harness.received().isEmpty)
        harness.loop.advanceTime(by: .seconds(2))
        let answer = try harness.received()
        #expect(answer.hasPrefix("HTTP/1.1 504 ") && answer.contains("upstream_timeout"), "\(answer)")
        #expect(harness.client.isActive, "a bodiless request's refusal keeps the connection")
    }

    /// A chunked body is re-framed as it passes: the upstream sees chunks of the data, never
    /// the client's own chunk lines or extensions.
    @Test func aChunkedBodyIsReframedWithoutTheClientsExtensions() async throws {
        let harness = try GatewayHarness()
        try await makeKey(in: harness.store, secret: "k")
        try harness.send(
            "POST /v1/orders/1 HTTP/1.1\r\nHost: gw\r\ntoken: k\r\nTransfer-Encoding: chunked\r\n\r\n3;name=evil\r\nabc\r\n0\r\nX-Trailer: t\r\n\r\n"
        )
        let sent = try harness.upstreamReceived()
        #expect(sent.contains("transfer-encoding: chunked\r\n"), "\(sent)")
        #expect(sent.hasSuffix("\r\n\r\n3\r\nabc\r\n0\r\n\r\n"), "\(sent)")
        #expect(!sent.contains("evil") && !sent.contains("X-Trailer"))
    }
}
