import NIOCore
import Testing

@testable import TollgateHTTP

/// The connection state machine alone: every event with an instant the test chooses.
@Suite struct ConnectionStateMachineTests {
    typealias Machine = ConnectionStateMachine<NIODeadline>
    let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000)

    /// A bodiless request, from its head to its answer.
    func answerOne(_ machine: inout Machine, keepAlive: Bool = true, now: NIODeadline) -> Machine.WriteAction {
        guard case .parse(let number) = machine.headReceived(.decidedAtEnd(dropsBody: false), keepAlive: keepAlive),
            case .decide(number) = machine.endReceived(), machine.mayWrite(number)
        else {
            Issue.record("a bodiless request is parsed to its end and decided")
            return .drop
        }
        return machine.answerWritten(now: now)
    }

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
        #expect(answerOne(&machine, now: t0 + .seconds(30)) == .keepOpen)
        #expect(machine.timerFired(now: t0 + .seconds(60)) == .rearm(t0 + .seconds(90)))
        // A head that never ends is still in the parser: the connection counts as idle, so
        // slowloris is closed on time.
        #expect(machine.timerFired(now: t0 + .seconds(90)) == .close)
    }

    @Test func aRequestWithTheStoreIsNotClosedAsIdle() {
        var machine = Machine(idleTimeout: .seconds(1), now: t0)
        _ = machine.activated(now: t0)
        _ = machine.headReceived(.decidedAtEnd(dropsBody: false), keepAlive: true)
        _ = machine.endReceived()
        #expect(machine.timerFired(now: t0 + .seconds(5)) == .rearm(t0 + .seconds(6)))
    }

    /// Pipelined requests are numbered as they come and answered in that order, whatever
    /// order the store decides them in; parsing pauses while too many answers are owed.
    @Test func pipelinedAnswersLeaveInOrderAndParsingPausesAtTheBound() {
        var machine = Machine(idleTimeout: .seconds(60), now: t0)
        for expected in 0..<Machine.maximumOwed {
            #expect(machine.mayParse)
            #expect(machine.headReceived(.decidedAtEnd(dropsBody: false), keepAlive: true) == .parse(number: expected))
            #expect(machine.endReceived() == .decide(number: expected))
        }
        #expect(!machine.mayParse, "no more requests are parsed while \(Machine.maximumOwed) answers are owed")
        #expect(!machine.readRequested(), "nor read")
        #expect(!machine.mayWrite(1), "answer 1 waits for answer 0")
        #expect(machine.mayWrite(0))
        #expect(machine.answerWritten(now: t0) == .keepOpen)
        #expect(machine.mayWrite(1))
        #expect(machine.mayParse)
        #expect(machine.takeHeldRead(), "the read held at the bound is passed on")
    }

    @Test func anUnwritableSocketPausesParsingAndHoldsReads() {
        var machine = Machine(idleTimeout: .seconds(60), now: t0)
        _ = machine.activated(now: t0)
        #expect(machine.readRequested())
        #expect(!machine.writabilityChanged(false, now: t0))
        #expect(!machine.mayParse, "no request is parsed while answers cannot leave")
        #expect(!machine.readRequested(), "nor read")
        #expect(machine.writabilityChanged(true, now: t0), "the held read goes once it drains")
        #expect(machine.mayParse)
    }

    @Test func aClientThatNeverReadsIsClosedAfterTheIdleTimeout() {
        var machine = Machine(idleTimeout: .seconds(10), now: t0)
        _ = machine.activated(now: t0)
        _ = machine.headReceived(.decidedAtEnd(dropsBody: false), keepAlive: true)
        _ = machine.endReceived()
        _ = machine.writabilityChanged(false, now: t0)
        #expect(machine.timerFired(now: t0 + .seconds(10)) == .close)
    }

    @Test func keepAliveOffClosesAfterTheAnswerAndAClosedConnectionWritesNothing() {
        var machine = Machine(idleTimeout: .seconds(60), now: t0)
        #expect(answerOne(&machine, keepAlive: false, now: t0) == .close(outputOnly: false))
        #expect(machine.answerWritten(now: t0) == .drop)
        #expect(!machine.mayParse)
    }

    @Test func aParseErrorIsAnsweredAsTheNextRequestAndClosesAfterIt() {
        var machine = Machine(idleTimeout: .seconds(60), now: t0)
        _ = machine.headReceived(.decidedAtEnd(dropsBody: false), keepAlive: true)
        _ = machine.endReceived()
        #expect(machine.parseFailed() == .answer(number: 1))
        #expect(machine.answerWritten(now: t0) == .keepOpen, "the answer before the error goes first")
        #expect(machine.answerWritten(now: t0) == .close(outputOnly: false))
    }

    /// A body no route takes: answered at once, read away, then the connection closes
    /// (its output first, so that the client still reads the answer).
    @Test func aRefusedBodyIsAnsweredAtOnceThenReadAwayThenClosed() {
        var machine = Machine(idleTimeout: .seconds(60), now: t0)
        #expect(machine.headReceived(.refusedWithBody, keepAlive: true) == .refuse(number: 0))
        #expect(machine.answerWritten(now: t0) == .close(outputOnly: true), "the client may still be sending")
        #expect(machine.mayParse, "the rest of the body is read away")
        #expect(machine.endReceived() == .closeWhenWritten)
    }

    /// A forward-auth body that outgrows its bound: answered now, read away, then closed.
    @Test func aBodyRefusedWhileReadingIsAnsweredThenReadAwayThenClosed() {
        var machine = Machine(idleTimeout: .seconds(60), now: t0)
        #expect(machine.headReceived(.decidedAtEnd(dropsBody: true), keepAlive: true) == .parse(number: 0))
        #expect(machine.bodyRefused() == 0)
        #expect(machine.answerWritten(now: t0) == .close(outputOnly: true))
        #expect(machine.endReceived() == .closeWhenWritten)
        var within = Machine(idleTimeout: .seconds(60), now: t0)
        _ = within.headReceived(.decidedAtEnd(dropsBody: true), keepAlive: true)
        #expect(within.endReceived() == .decide(number: 0), "a body within the bound is read away, then decided")
    }

    @Test func aMalformedDroppedBodyIsRefusedAsItsRequest() {
        var machine = Machine(idleTimeout: .seconds(60), now: t0)
        _ = machine.headReceived(.decidedAtEnd(dropsBody: true), keepAlive: true)
        #expect(machine.parseFailed() == .refuseBody(number: 0))
        #expect(machine.answerWritten(now: t0) == .close(outputOnly: false))
    }

    @Test func quiescingClosesAnIdleConnectionAtOnceAndABusyOneAfterItsAnswers() {
        var idle = Machine(idleTimeout: .seconds(60), now: t0)
        #expect(idle.quiesce())
        var busy = Machine(idleTimeout: .seconds(60), now: t0)
        _ = busy.headReceived(.decidedAtEnd(dropsBody: false), keepAlive: true)
        _ = busy.endReceived()
        #expect(!busy.quiesce())
        #expect(!busy.mayParse, "nothing after the requests owed is read")
        #expect(busy.answerWritten(now: t0) == .close(outputOnly: false))
    }
}

/// A forwarded request: decided from its head, its body held until the upstream takes it.
@Suite struct StreamingStateMachineTests {
    typealias Machine = ConnectionStateMachine<NIODeadline>
    let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000)

    @Test func theBodyIsHeldUntilSentAndFollowsTheUpstreamsDemand() {
        var machine = Machine(idleTimeout: .seconds(60), now: t0)
        _ = machine.activated(now: t0)
        #expect(machine.headReceived(.streamed(hasBody: true), keepAlive: true) == .beginStream(number: 0))
        #expect(!machine.mayParse, "no body is parsed before the request is admitted and sent")
        #expect(!machine.readRequested())
        #expect(!machine.updateProxy { $0.admitted() })
        #expect(!machine.mayParse, "nor while its upstream connection is being found")
        #expect(machine.updateProxy { $0.sent() }, "the held read goes out once the head went upstream")
        #expect(machine.mayParse)
        _ = machine.updateProxy { $0.upstreamWritabilityChanged(false) }
        #expect(!machine.mayParse, "a full upstream holds the body")
        _ = machine.updateProxy { $0.upstreamWritabilityChanged(true) }
        #expect(machine.mayParse)
        #expect(machine.endReceived() == .forwardEnd)
        #expect(!machine.mayParse, "nothing after a forwarded request is parsed before its answer is done")
        #expect(!machine.answerBegins(now: t0), "a whole request keeps the connection")
        #expect(machine.answerWritten(now: t0) == .keepOpen)
        #expect(machine.mayParse)
    }

    @Test func anAnswerBeforeTheBodyEndsClosesAfterReadingItAway() {
        var machine = Machine(idleTimeout: .seconds(60), now: t0)
        _ = machine.headReceived(.streamed(hasBody: true), keepAlive: true)
        _ = machine.updateProxy {
            $0.admitted()
            $0.sent()
        }
        #expect(machine.answerBegins(now: t0), "the answer says connection: close")
        #expect(machine.mayParse, "the rest of the body is read away")
        #expect(machine.answerWritten(now: t0) == .close(outputOnly: true))
        #expect(machine.endReceived() == .closeWhenWritten)
    }

    /// A forwarded request without a body has ended with its head: it begins at that end,
    /// so that a refusal finds it whole and keeps the connection.
    @Test func aForwardedRequestWithoutABodyBeginsAtItsEndAndARefusalKeepsTheConnection() {
        var machine = Machine(idleTimeout: .seconds(60), now: t0)
        #expect(machine.headReceived(.streamed(hasBody: false), keepAlive: true) == .parse(number: 0))
        #expect(machine.endReceived() == .beginStream(number: 0))
        #expect(!machine.answerBegins(now: t0))
        machine.proxyEnded()
        #expect(machine.answerWritten(now: t0) == .keepOpen)
        #expect(machine.headReceived(.decidedAtEnd(dropsBody: false), keepAlive: true) == .parse(number: 1))
    }

    @Test func aForwardedRequestWaitsForTheAnswersBeforeIt() {
        var machine = Machine(idleTimeout: .seconds(60), now: t0)
        _ = machine.headReceived(.decidedAtEnd(dropsBody: false), keepAlive: true)
        _ = machine.endReceived()
        #expect(machine.headReceived(.streamed(hasBody: true), keepAlive: true) == .waitForEarlierAnswers(number: 1))
        #expect(machine.streamMayBegin() == nil)
        #expect(machine.answerWritten(now: t0) == .keepOpen)
        #expect(machine.streamMayBegin() == 1)
    }

    @Test func aMalformedForwardedBodyFailsTheStreamAndClosesAfterTheAnswer() {
        var machine = Machine(idleTimeout: .seconds(60), now: t0)
        _ = machine.headReceived(.streamed(hasBody: true), keepAlive: true)
        #expect(machine.parseFailed() == .failStream)
        #expect(machine.answerWritten(now: t0) == .close(outputOnly: false))
    }

    @Test func aStalledStreamIsClosedAfterTheIdleTimeout() {
        var machine = Machine(idleTimeout: .seconds(10), now: t0)
        _ = machine.activated(now: t0)
        _ = machine.headReceived(.streamed(hasBody: true), keepAlive: true)
        machine.streamed(now: t0 + .seconds(5))
        #expect(machine.timerFired(now: t0 + .seconds(10)) == .rearm(t0 + .seconds(15)))
        #expect(machine.timerFired(now: t0 + .seconds(15)) == .close)
    }

    /// A failed send is tried again only for a request that can be sent again as it was.
    @Test(arguments: [
        (true, true, false, true), (false, true, false, false), (true, false, false, false), (true, true, true, false),
    ])
    func aFailedSendIsRetriedOnlyWhenSafe(safe: Bool, ended: Bool, sentBody: Bool, retried: Bool) {
        var proxy = ProxyStateMachine(number: 0)
        proxy.admitted()
        proxy.sent()
        if ended { proxy.endRequest() }
        if sentBody { proxy.bodySent() }
        #expect(proxy.retryAfterFailure(safe: safe) == retried)
        if retried {
            proxy.sent()
            #expect(!proxy.retryAfterFailure(safe: safe), "once at most")
        }
    }
}
