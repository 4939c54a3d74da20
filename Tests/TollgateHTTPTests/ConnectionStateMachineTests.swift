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
        let value1 = machine.timerFired(now: t0 + .seconds(59))
        #expect(value1 == .rearm(t0 + .seconds(60)))
        let value2 = machine.timerFired(now: t0 + .seconds(60))
        #expect(value2 == .close)
        #expect(machine.isClosed)
        let value3 = machine.timerFired(now: t0 + .seconds(61))
        #expect(value3 == .none)
    }

    @Test func anAnswerRestartsTheIdleClockAndAHalfSentHeadDoesNot() {
        var machine = Machine(idleTimeout: .seconds(60), now: t0)
        _ = machine.activated(now: t0)
        #expect(answerOne(&machine, now: t0 + .seconds(30)) == .keepOpen)
        let value4 = machine.timerFired(now: t0 + .seconds(60))
        #expect(value4 == .rearm(t0 + .seconds(90)))
        // A head that never ends is still in the parser: the connection counts as idle, so
        // slowloris is closed on time.
        let value5 = machine.timerFired(now: t0 + .seconds(90))
        #expect(value5 == .close)
    }

    @Test func aRequestWithTheStoreIsNotClosedAsIdle() {
        var machine = Machine(idleTimeout: .seconds(1), now: t0)
        _ = machine.activated(now: t0)
        _ = machine.headReceived(.decidedAtEnd(dropsBody: false), keepAlive: true)
        _ = machine.endReceived()
        let value6 = machine.timerFired(now: t0 + .seconds(5))
        #expect(value6 == .rearm(t0 + .seconds(6)))
    }

    /// Pipelined requests are numbered as they come and answered in that order, whatever
    /// order the store decides them in; parsing pauses while too many answers are owed.
    @Test func pipelinedAnswersLeaveInOrderAndParsingPausesAtTheBound() {
        var machine = Machine(idleTimeout: .seconds(60), now: t0)
        for expected in 0..<Machine.maximumOwed {
            #expect(machine.mayParse)
            let value7 = machine.headReceived(.decidedAtEnd(dropsBody: false), keepAlive: true)
            #expect(value7 == .parse(number: expected))
            let value8 = machine.endReceived()
            #expect(value8 == .decide(number: expected))
        }
        #expect(!machine.mayParse, "no more requests are parsed while \(Machine.maximumOwed) answers are owed")
        let value9 = machine.readRequested()
        #expect(!value9, "nor read")
        #expect(!machine.mayWrite(1), "answer 1 waits for answer 0")
        #expect(machine.mayWrite(0))
        let value10 = machine.answerWritten(now: t0)
        #expect(value10 == .keepOpen)
        #expect(machine.mayWrite(1))
        #expect(machine.mayParse)
        let value11 = machine.takeHeldRead()
        #expect(value11, "the read held at the bound is passed on")
    }

    @Test func anUnwritableSocketPausesParsingAndHoldsReads() {
        var machine = Machine(idleTimeout: .seconds(60), now: t0)
        _ = machine.activated(now: t0)
        let value12 = machine.readRequested()
        #expect(value12)
        let value13 = machine.writabilityChanged(false, now: t0)
        #expect(!value13)
        #expect(!machine.mayParse, "no request is parsed while answers cannot leave")
        let value14 = machine.readRequested()
        #expect(!value14, "nor read")
        let value15 = machine.writabilityChanged(true, now: t0)
        #expect(value15, "the held read goes once it drains")
        #expect(machine.mayParse)
    }

    @Test func aClientThatNeverReadsIsClosedAfterTheIdleTimeout() {
        var machine = Machine(idleTimeout: .seconds(10), now: t0)
        _ = machine.activated(now: t0)
        _ = machine.headReceived(.decidedAtEnd(dropsBody: false), keepAlive: true)
        _ = machine.endReceived()
        _ = machine.writabilityChanged(false, now: t0)
        let value16 = machine.timerFired(now: t0 + .seconds(10))
        #expect(value16 == .close)
    }

    @Test func keepAliveOffClosesAfterTheAnswerAndAClosedConnectionWritesNothing() {
        var machine = Machine(idleTimeout: .seconds(60), now: t0)
        #expect(answerOne(&machine, keepAlive: false, now: t0) == .close(outputOnly: false))
        let value17 = machine.answerWritten(now: t0)
        #expect(value17 == .drop)
        #expect(!machine.mayParse)
    }

    @Test func aParseErrorIsAnsweredAsTheNextRequestAndClosesAfterIt() {
        var machine = Machine(idleTimeout: .seconds(60), now: t0)
        _ = machine.headReceived(.decidedAtEnd(dropsBody: false), keepAlive: true)
        _ = machine.endReceived()
        let value18 = machine.parseFailed()
        #expect(value18 == .answer(number: 1))
        let value19 = machine.answerWritten(now: t0)
        #expect(value19 == .keepOpen, "the answer before the error goes first")
        let value20 = machine.answerWritten(now: t0)
        #expect(value20 == .close(outputOnly: false))
    }

    /// A body no route takes: answered at once, read away, then the connection closes
    /// (its output first, so that the client still reads the answer).
    @Test func aRefusedBodyIsAnsweredAtOnceThenReadAwayThenClosed() {
        var machine = Machine(idleTimeout: .seconds(60), now: t0)
        let value21 = machine.headReceived(.refusedWithBody, keepAlive: true)
        #expect(value21 == .refuse(number: 0))
        let value22 = machine.answerWritten(now: t0)
        #expect(value22 == .close(outputOnly: true), "the client may still be sending")
        #expect(machine.mayParse, "the rest of the body is read away")
        let value23 = machine.endReceived()
        #expect(value23 == .closeWhenWritten)
    }

    /// A forward-auth body that outgrows its bound: answered now, read away, then closed.
    @Test func aBodyRefusedWhileReadingIsAnsweredThenReadAwayThenClosed() {
        var machine = Machine(idleTimeout: .seconds(60), now: t0)
        let value24 = machine.headReceived(.decidedAtEnd(dropsBody: true), keepAlive: true)
        #expect(value24 == .parse(number: 0))
        let value25 = machine.bodyRefused()
        #expect(value25 == 0)
        let value26 = machine.answerWritten(now: t0)
        #expect(value26 == .close(outputOnly: true))
        let value27 = machine.endReceived()
        #expect(value27 == .closeWhenWritten)
        var within = Machine(idleTimeout: .seconds(60), now: t0)
        _ = within.headReceived(.decidedAtEnd(dropsBody: true), keepAlive: true)
        let value28 = within.endReceived()
        #expect(value28 == .decide(number: 0), "a body within the bound is read away, then decided")
    }

    @Test func aMalformedDroppedBodyIsRefusedAsItsRequest() {
        var machine = Machine(idleTimeout: .seconds(60), now: t0)
        _ = machine.headReceived(.decidedAtEnd(dropsBody: true), keepAlive: true)
        let value29 = machine.parseFailed()
        #expect(value29 == .refuseBody(number: 0))
        let value30 = machine.answerWritten(now: t0)
        #expect(value30 == .close(outputOnly: false))
    }

    @Test func quiescingClosesAnIdleConnectionAtOnceAndABusyOneAfterItsAnswers() {
        var idle = Machine(idleTimeout: .seconds(60), now: t0)
        let value31 = idle.quiesce()
        #expect(value31)
        var busy = Machine(idleTimeout: .seconds(60), now: t0)
        _ = busy.headReceived(.decidedAtEnd(dropsBody: false), keepAlive: true)
        _ = busy.endReceived()
        let value32 = busy.quiesce()
        #expect(!value32)
        #expect(!busy.mayParse, "nothing after the requests owed is read")
        let value33 = busy.answerWritten(now: t0)
        #expect(value33 == .close(outputOnly: false))
    }
}

/// A forwarded request: decided from its head, its body held until the upstream takes it.
@Suite struct StreamingStateMachineTests {
    typealias Machine = ConnectionStateMachine<NIODeadline>
    let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000)

    @Test func theBodyIsHeldUntilSentAndFollowsTheUpstreamsDemand() {
        var machine = Machine(idleTimeout: .seconds(60), now: t0)
        _ = machine.activated(now: t0)
        let value34 = machine.headReceived(.streamed(hasBody: true), keepAlive: true)
        #expect(value34 == .beginStream(number: 0))
        #expect(!machine.mayParse, "no body is parsed before the request is admitted and sent")
        let value35 = machine.readRequested()
        #expect(!value35)
        let afterAdmission = machine.updateProxy { $0.admitted() }
        #expect(!afterAdmission)
        #expect(!machine.mayParse, "nor while its upstream connection is being found")
        let afterSending = machine.updateProxy { $0.sent() }
        #expect(afterSending, "the held read goes out once the head went upstream")
        #expect(machine.mayParse)
        _ = machine.updateProxy { $0.upstreamWritabilityChanged(false) }
        #expect(!machine.mayParse, "a full upstream holds the body")
        _ = machine.updateProxy { $0.upstreamWritabilityChanged(true) }
        #expect(machine.mayParse)
        let value36 = machine.endReceived()
        #expect(value36 == .forwardEnd)
        #expect(!machine.mayParse, "nothing after a forwarded request is parsed before its answer is done")
        let value37 = machine.answerBegins(now: t0)
        #expect(!value37, "a whole request keeps the connection")
        let value38 = machine.answerWritten(now: t0)
        #expect(value38 == .keepOpen)
        #expect(machine.mayParse)
    }

    @Test func anAnswerBeforeTheBodyEndsClosesAfterReadingItAway() {
        var machine = Machine(idleTimeout: .seconds(60), now: t0)
        _ = machine.headReceived(.streamed(hasBody: true), keepAlive: true)
        _ = machine.updateProxy {
            $0.admitted()
            $0.sent()
        }
        let value39 = machine.answerBegins(now: t0)
        #expect(value39, "the answer says connection: close")
        #expect(machine.mayParse, "the rest of the body is read away")
        let value40 = machine.answerWritten(now: t0)
        #expect(value40 == .close(outputOnly: true))
        let value41 = machine.endReceived()
        #expect(value41 == .closeWhenWritten)
    }

    /// A forwarded request without a body has ended with its head: it begins at that end,
    /// so that a refusal finds it whole and keeps the connection.
    @Test func aForwardedRequestWithoutABodyBeginsAtItsEndAndARefusalKeepsTheConnection() {
        var machine = Machine(idleTimeout: .seconds(60), now: t0)
        let value42 = machine.headReceived(.streamed(hasBody: false), keepAlive: true)
        #expect(value42 == .parse(number: 0))
        let value43 = machine.endReceived()
        #expect(value43 == .beginStream(number: 0))
        let value44 = machine.answerBegins(now: t0)
        #expect(!value44)
        machine.proxyEnded()
        let value45 = machine.answerWritten(now: t0)
        #expect(value45 == .keepOpen)
        let value46 = machine.headReceived(.decidedAtEnd(dropsBody: false), keepAlive: true)
        #expect(value46 == .parse(number: 1))
    }

    @Test func aForwardedRequestWaitsForTheAnswersBeforeIt() {
        var machine = Machine(idleTimeout: .seconds(60), now: t0)
        _ = machine.headReceived(.decidedAtEnd(dropsBody: false), keepAlive: true)
        _ = machine.endReceived()
        let value47 = machine.headReceived(.streamed(hasBody: true), keepAlive: true)
        #expect(value47 == .waitForEarlierAnswers(number: 1))
        let value48 = machine.streamMayBegin()
        #expect(value48 == nil)
        let value49 = machine.answerWritten(now: t0)
        #expect(value49 == .keepOpen)
        let value50 = machine.streamMayBegin()
        #expect(value50 == 1)
    }

    @Test func aMalformedForwardedBodyFailsTheStreamAndClosesAfterTheAnswer() {
        var machine = Machine(idleTimeout: .seconds(60), now: t0)
        _ = machine.headReceived(.streamed(hasBody: true), keepAlive: true)
        let value51 = machine.parseFailed()
        #expect(value51 == .failStream)
        let value52 = machine.answerWritten(now: t0)
        #expect(value52 == .close(outputOnly: false))
    }

    @Test func aStalledStreamIsClosedAfterTheIdleTimeout() {
        var machine = Machine(idleTimeout: .seconds(10), now: t0)
        _ = machine.activated(now: t0)
        _ = machine.headReceived(.streamed(hasBody: true), keepAlive: true)
        machine.streamed(now: t0 + .seconds(5))
        let value53 = machine.timerFired(now: t0 + .seconds(10))
        #expect(value53 == .rearm(t0 + .seconds(15)))
        let value54 = machine.timerFired(now: t0 + .seconds(15))
        #expect(value54 == .close)
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
        let value55 = proxy.retryAfterFailure(safe: safe)
        #expect(value55 == retried)
        if retried {
            proxy.sent()
            let value56 = proxy.retryAfterFailure(safe: safe)
            #expect(!value56, "once at most")
        }
    }
}
