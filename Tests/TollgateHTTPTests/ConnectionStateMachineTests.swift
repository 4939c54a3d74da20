import Foundation
import NIOCore
import NIOEmbedded
import NIOHTTP1
import Testing
import TollgateCore
import TollgateTestSupport

@testable import TollgateHTTP

/// The connection state machine alone: every event with an instant the test chooses.
@Suite struct ConnectionStateMachineTests {
    typealias Machine = ConnectionStateMachine<NIODeadline, String>
    let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000)

    @Test func anIdleConnectionClosesAtItsDeadlineAndNotBefore() {
        var machine = Machine(idleTimeout: .seconds(60), now: t0)
        let deadline = machine.activated(now: t0)
        #expect(deadline == t0 + .seconds(60))
        #expect(machine.timerFired(now: t0 + .seconds(59)) == .rearm(t0 + .seconds(60)))
        #expect(machine.timerFired(now: t0 + .seconds(60)) == .close)
        #expect(machine.isClosed)
        #expect(machine.timerFired(now: t0 + .seconds(61)) == .none)
    }

    @Test func anAnswerRestartsTheIdleClockAndAHalfSentHeadDoesNot() {
        var machine = Machine(idleTimeout: .seconds(60), now: t0)
        _ = machine.activated(now: t0)
        _ = machine.headReceived("a", keepAlive: true, hasBody: false)
        guard case .handle("a") = machine.endReceived() else {
            Issue.record("a complete request is handled")
            return
        }
        #expect(machine.willWriteAnswer(now: t0 + .seconds(30)) == .keepOpen)
        machine.answerWritten()
        #expect(machine.timerFired(now: t0 + .seconds(60)) == .rearm(t0 + .seconds(90)))
        // A head that never ends counts as idle: slowloris is closed on time.
        _ = machine.headReceived("b", keepAlive: true, hasBody: false)
        #expect(machine.timerFired(now: t0 + .seconds(90)) == .close)
    }

    @Test func aRequestWithTheStoreIsNotClosedAsIdle() {
        var machine = Machine(idleTimeout: .seconds(1), now: t0)
        _ = machine.activated(now: t0)
        _ = machine.headReceived("a", keepAlive: true, hasBody: false)
        _ = machine.endReceived()
        #expect(machine.timerFired(now: t0 + .seconds(5)) == .rearm(t0 + .seconds(6)))
    }

    @Test func anUnwritableSocketParksTheRequestAndHoldsReads() {
        var machine = Machine(idleTimeout: .seconds(60), now: t0)
        _ = machine.activated(now: t0)
        let readsAtFirst = machine.readRequested()
        #expect(readsAtFirst)
        guard case .none = machine.writabilityChanged(false) else {
            Issue.record("nothing to do when the socket fills")
            return
        }
        let readsWhileFull = machine.readRequested()
        #expect(!readsWhileFull, "no more requests are read while answers cannot leave")
        _ = machine.headReceived("a", keepAlive: true, hasBody: false)
        guard case .park = machine.endReceived() else {
            Issue.record("a complete request waits for the socket to drain")
            return
        }
        guard case .resume("a", read: true) = machine.writabilityChanged(true) else {
            Issue.record("the parked request is answered and the held read passed on once it drains")
            return
        }
        let readsAfterDrain = machine.readRequested()
        #expect(readsAfterDrain)
    }

    @Test func aClientThatNeverReadsIsClosedAfterTheIdleTimeout() {
        var machine = Machine(idleTimeout: .seconds(10), now: t0)
        _ = machine.activated(now: t0)
        _ = machine.writabilityChanged(false)
        _ = machine.headReceived("a", keepAlive: true, hasBody: false)
        _ = machine.endReceived()
        #expect(machine.timerFired(now: t0 + .seconds(10)) == .close)
    }

    @Test func aBodyIsAnsweredAtOnceThenReadAwayThenClosed() {
        var machine = Machine(idleTimeout: .seconds(60), now: t0)
        guard case .answerNow("a") = machine.headReceived("a", keepAlive: true, hasBody: true) else {
            Issue.record("a body is refused at once")
            return
        }
        #expect(machine.willWriteAnswer(now: t0) == .close(outputOnly: true))
        guard case .close = machine.endReceived() else {
            Issue.record("the connection closes once the body has been read away")
            return
        }
    }

    @Test func deepPipelinedBurstsContinueOnAFreshStack() {
        var machine = Machine(idleTimeout: .seconds(60), now: t0)
        for depth in 0..<Machine.maximumNesting {
            _ = machine.headReceived("r\(depth)", keepAlive: true, hasBody: false)
            guard case .handle = machine.endReceived() else {
                Issue.record("depth \(depth) is handled inline")
                return
            }
            #expect(machine.willWriteAnswer(now: t0) == .keepOpen)
            // The write re-enters with the next request before `answerWritten`.
        }
        _ = machine.headReceived("deep", keepAlive: true, hasBody: false)
        guard case .handleLater("deep") = machine.endReceived() else {
            Issue.record("past the bound the request is handled on the next tick")
            return
        }
    }

    @Test func keepAliveOffClosesAfterTheAnswerAndAClosedConnectionWritesNothing() {
        var machine = Machine(idleTimeout: .seconds(60), now: t0)
        _ = machine.headReceived("a", keepAlive: false, hasBody: false)
        _ = machine.endReceived()
        #expect(machine.willWriteAnswer(now: t0) == .close(outputOnly: false))
        #expect(machine.willWriteAnswer(now: t0) == .drop)
    }

    @Test func aParseErrorIsAnsweredOnlyBetweenRequests() {
        var idle = Machine(idleTimeout: .seconds(60), now: t0)
        #expect(idle.parseFailed() == .answer)
        var midRequest = Machine(idleTimeout: .seconds(60), now: t0)
        _ = midRequest.headReceived("a", keepAlive: true, hasBody: false)
        #expect(midRequest.parseFailed() == .close)
    }

    /// A forward-auth body that outgrows its bound: answered now, read away, then closed.
    @Test func aBodyRefusedWhileReadingIsAnsweredThenReadAwayThenClosed() {
        var machine = Machine(idleTimeout: .seconds(60), now: t0)
        guard case .wait = machine.headReceived("a", keepAlive: true, hasBody: false) else {
            Issue.record("a body read away before the decision is waited for")
            return
        }
        machine.bodyRefused()
        #expect(machine.willWriteAnswer(now: t0) == .close(outputOnly: true), "the client may still be sending")
        guard case .close = machine.endReceived() else {
            Issue.record("the connection closes once the body has ended")
            return
        }
    }
}

/// A streamed (proxied) request: decided from its head, its body held until wanted.
@Suite struct StreamingStateMachineTests {
    typealias Machine = ConnectionStateMachine<NIODeadline, String>
    let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000)

    @Test func theBodyIsHeldUntilWantedAndFollowsTheUpstreamsDemand() {
        var machine = Machine(idleTimeout: .seconds(60), now: t0)
        _ = machine.activated(now: t0)
        guard case .decideNow("a") = machine.headReceived("a", keepAlive: true, hasBody: true, streams: true) else {
            Issue.record("a streamed request is decided from its head")
            return
        }
        let v1 = machine.readRequested()
        #expect(!v1, "no body is read before the request is admitted")
        let v2 = machine.bodyWanted(true)
        #expect(v2, "the held read goes out once the upstream is ready")
        let v3 = machine.readRequested()
        #expect(v3)
        let v4 = machine.bodyWanted(false)
        #expect(!v4)
        let v5 = machine.readRequested()
        #expect(!v5, "a full upstream holds the body")
        let v6 = machine.bodyWanted(true)
        #expect(v6)
        guard case .forwardEnd = machine.endReceived() else {
            Issue.record("the body's end goes upstream")
            return
        }
        let v7 = machine.readRequested()
        #expect(v7, "after the end, reads are for the next request")
        let v8 = machine.willStreamAnswer()
        #expect(!v8, "a whole request keeps the connection")
        let v9 = machine.willWriteAnswer(now: t0)
        #expect(v9 == .keepOpen)
    }

    @Test func anAnswerBeforeTheBodyEndsClosesAfterReadingItAway() {
        var machine = Machine(idleTimeout: .seconds(60), now: t0)
        _ = machine.headReceived("a", keepAlive: true, hasBody: true, streams: true)
        let v10 = machine.willStreamAnswer()
        #expect(v10, "the answer says connection: close")
        let v11 = machine.willWriteAnswer(now: t0)
        #expect(v11 == .close(outputOnly: true))
        let v12 = machine.readRequested()
        #expect(v12, "the rest of the body is read away")
        guard case .close = machine.endReceived() else {
            Issue.record("the connection closes once the body has ended")
            return
        }
    }

    /// A streamed request without a body ends with its head: an answer decided at once (a
    /// refusal) keeps the connection, and the decoder's end that follows changes nothing. A
    /// close there raced clients still writing the request's end (seen as a test failure).
    @Test func aStreamedRequestWithoutABodyIsAnsweredWithoutClosing() {
        var machine = Machine(idleTimeout: .seconds(60), now: t0)
        _ = machine.activated(now: t0)
        guard case .decideNow("a") = machine.headReceived("a", keepAlive: true, hasBody: false, streams: true) else {
            Issue.record("a streamed request is decided from its head")
            return
        }
        let readable = machine.readRequested()
        #expect(readable, "no body to hold")
        let closes = machine.willStreamAnswer()
        #expect(!closes)
        #expect(machine.willWriteAnswer(now: t0) == .keepOpen)
        machine.answerWritten()
        guard case .ignore = machine.endReceived() else {
            Issue.record("the end that follows the head is nothing to act on")
            return
        }
        guard case .wait = machine.headReceived("b", keepAlive: true, hasBody: false) else {
            Issue.record("the connection takes the next request")
            return
        }
    }

    /// A malformed body under way: the exchange is failed and answered, and the connection
    /// closes both ways (the decoder reads nothing more). A parse error after a request has
    /// ended belongs to the next request: the one under way is answered first.
    @Test func aMalformedStreamedBodyFailsTheStreamAndClosesAfterTheAnswer() {
        var machine = Machine(idleTimeout: .seconds(60), now: t0)
        _ = machine.headReceived("a", keepAlive: true, hasBody: true, streams: true)
        #expect(machine.parseFailed() == .failStream)
        #expect(machine.willWriteAnswer(now: t0) == .close(outputOnly: false))

        var ended = Machine(idleTimeout: .seconds(60), now: t0)
        _ = ended.headReceived("a", keepAlive: true, hasBody: true, streams: true)
        _ = ended.endReceived()
        #expect(ended.parseFailed() == .none)
        #expect(ended.willWriteAnswer(now: t0) == .close(outputOnly: false), "the answer under way goes, then the connection closes")
    }

    @Test func aStalledStreamIsClosedAfterTheIdleTimeout() {
        var machine = Machine(idleTimeout: .seconds(10), now: t0)
        _ = machine.activated(now: t0)
        _ = machine.headReceived("a", keepAlive: true, hasBody: true, streams: true)
        machine.streamed(now: t0 + .seconds(5))
        #expect(machine.timerFired(now: t0 + .seconds(10)) == .rearm(t0 + .seconds(15)))
        #expect(machine.timerFired(now: t0 + .seconds(15)) == .close)
    }
}

/// The handler on an `EmbeddedChannel`: the event loop's clock is moved by hand.
@Suite struct DataPlaneHandlerTests {
    func makeChannel(idleTimeout: TimeAmount = .seconds(60)) throws -> EmbeddedChannel {
        var configuration = DataPlaneConfiguration()
        configuration.idleTimeout = idleTimeout
        let shared = DataPlaneShared(store: MemoryKeyStore(), clock: SystemWallClock(), configuration: configuration, logger: quietLogger)
        let channel = EmbeddedChannel()
        try DataPlaneServer<MemoryKeyStore, SystemWallClock>.configure(channel.pipeline.syncOperations, shared: shared)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        return channel
    }

    func answers(_ channel: EmbeddedChannel) throws -> String {
        var text = ""
        while let chunk = try channel.readOutbound(as: IOData.self) {
            if case .byteBuffer(let buffer) = chunk { text += String(buffer: buffer) }
        }
        return text
    }

    @Test func theIdleTimerFollowsTheLoopsClock() throws {
        let channel = try makeChannel(idleTimeout: .seconds(60))
        let loop = channel.embeddedEventLoop
        loop.advanceTime(by: .seconds(59))
        #expect(channel.isActive)
        loop.advanceTime(by: .seconds(2))
        #expect(!channel.isActive)
    }

    @Test func answersWaitWhileTheSocketIsFullAndFollowWhenItDrains() throws {
        let channel = try makeChannel()
        channel.isWritable = false
        channel.pipeline.fireChannelWritabilityChanged()
        try channel.writeInbound(ByteBuffer(string: "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"))
        #expect(try answers(channel).isEmpty, "nothing is answered while the socket cannot take it")
        channel.isWritable = true
        channel.pipeline.fireChannelWritabilityChanged()
        let text = try answers(channel)
        #expect(text.components(separatedBy: "HTTP/1.1 200 OK").count - 1 == 2)
        #expect(text.contains("cache-control: no-store"))
        _ = try? channel.finish()
    }

    @Test func aClientThatNeverDrainsItsAnswersIsClosedWhenIdle() throws {
        let channel = try makeChannel(idleTimeout: .seconds(10))
        try channel.writeInbound(ByteBuffer(string: "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"))
        channel.isWritable = false
        channel.pipeline.fireChannelWritabilityChanged()
        try channel.writeInbound(ByteBuffer(string: "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"))
        channel.embeddedEventLoop.advanceTime(by: .seconds(11))
        #expect(!channel.isActive)
    }
}
