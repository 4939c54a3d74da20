import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOEmbedded
import Testing

@testable import TollgateRESP

/// A connection over an `EmbeddedChannel`, so the exact bytes and timing can be controlled.
struct EmbeddedRESP {
    let channel: EmbeddedChannel
    let connection: RESPConnection

    init(timeout: TimeAmount = .milliseconds(100), lateReplyWindow: TimeAmount = .seconds(30)) throws {
        self.channel = EmbeddedChannel()
        let handler = RESPChannelHandler(
            commandTimeout: timeout, lateReplyWindow: lateReplyWindow, limits: RESPDecoderLimits(), logger: Logger(label: "test"))
        try self.channel.pipeline.syncOperations.addHandler(handler)
        try self.channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 6379)).wait()
        self.connection = try RESPConnection.wrap(channel: self.channel)
    }

    func written() throws -> String {
        var all = ByteBuffer()
        while var b = try self.channel.readOutbound(as: ByteBuffer.self) { all.writeBuffer(&b) }
        return String(buffer: all)
    }

    func reply(_ wire: String) throws {
        try self.channel.writeInbound(ByteBuffer(string: wire))
    }
}

/// Captures a future's result on the embedded loop (where futures complete synchronously).
final class Outcome<T: Sendable>: Sendable {
    private let box = NIOLockedValueBox<Result<T, RESPError>?>(nil)
    init(_ future: EventLoopFuture<T>) {
        future.whenComplete { result in self.box.withLockedValue { $0 = result.mapError(RESPConnection.asRESPError) } }
    }
    var result: Result<T, RESPError>? { self.box.withLockedValue { $0 } }
    var value: T? { if case .success(let v) = self.result { return v } else { return nil } }
    var error: RESPError? { if case .failure(let e) = self.result { return e } else { return nil } }
}

@Suite struct WireTests {
    @Test func writesExactBytesAndReadsReply() throws {
        let t = try EmbeddedRESP()
        let get = Outcome(t.connection.send(RESPCommand("GET", "k")))
        #expect(try t.written() == "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n")
        #expect(get.result == nil)
        try t.reply("$2\r\nhi\r\n")
        #expect(get.value == .bulkString(ByteBuffer(string: "hi")))
    }

    @Test func pipelineIsOneWriteAndMatchesInOrder() throws {
        let t = try EmbeddedRESP()
        let results = Outcome(t.connection.pipeline([RESPCommand("INCR", "a"), RESPCommand("GET", "b"), RESPCommand("BAD")]))
        // One buffer for the whole batch.
        let first = try #require(try t.channel.readOutbound(as: ByteBuffer.self))
        #expect(String(buffer: first) == "*2\r\n$4\r\nINCR\r\n$1\r\na\r\n*2\r\n$3\r\nGET\r\n$1\r\nb\r\n*1\r\n$3\r\nBAD\r\n")
        #expect(try t.channel.readOutbound(as: ByteBuffer.self) == nil)
        try t.reply(":1\r\n$-1\r\n-ERR unknown command 'BAD'\r\n")
        let r = try #require(results.value)
        #expect(r.count == 3)
        #expect(try r[0].get() == .integer(1))
        #expect(try r[1].get() == .null)
        #expect(r[2] == .failure(RESPError(.serverError, "ERR unknown command 'BAD'")))
    }

    @Test func manyPipelinedCommandsMatchRepliesInOrder() throws {
        let t = try EmbeddedRESP()
        let outcomes = (0..<200).map { i in Outcome(t.connection.send(RESPCommand("ECHO", .integer(i)))) }
        _ = try t.written()
        let wire = (0..<200).map { ":\($0)\r\n" }.joined()
        // Deliver all replies in odd-sized chunks.
        let bytes = Array(wire.utf8)
        var i = 0
        while i < bytes.count {
            let end = min(bytes.count, i + 7)
            try t.channel.writeInbound(ByteBuffer(bytes: bytes[i..<end]))
            i = end
        }
        for (n, o) in outcomes.enumerated() { #expect(o.value == .integer(Int64(n))) }
    }

    @Test func everyReplyTypeThroughTheHandlerByteByByte() throws {
        let t = try EmbeddedRESP()
        // Pushes are out-of-band and answer no command.
        let answers = replyFixtures.filter { if case .push = $0.value { return false } else { return true } }
        let outcomes = answers.map { _ in Outcome(t.connection.send(RESPCommand("X"))) }
        for byte in replyFixtures.map(\.wire).joined().utf8 {
            try t.channel.writeInbound(ByteBuffer(bytes: [byte]))
        }
        for (o, f) in zip(outcomes, answers) {
            if case .error(let message) = f.value {
                #expect(o.error == RESPError(.serverError, message))
            } else {
                #expect(o.value == f.value)
            }
        }
        #expect(t.channel.isActive)
    }

    @Test func pushMessagesDoNotConsumeAReply() throws {
        let t = try EmbeddedRESP()
        let ping = Outcome(t.connection.send(RESPCommand("PING")))
        try t.reply(">2\r\n+invalidate\r\n*0\r\n+PONG\r\n")
        #expect(ping.value == .simpleString("PONG"))
    }

    @Test func malformedReplyFailsEverythingAndCloses() throws {
        let t = try EmbeddedRESP()
        let a = Outcome(t.connection.send(RESPCommand("GET", "a")))
        let b = Outcome(t.connection.send(RESPCommand("GET", "b")))
        try? t.reply("&nonsense\r\n")
        #expect(a.error?.code == .protocolError)
        #expect(b.error?.code == .protocolError)
        #expect(!t.channel.isActive)
        let later = Outcome(t.connection.send(RESPCommand("PING")))
        #expect(later.error?.code == .connectionClosed)
    }

    @Test func unexpectedReplyIsAProtocolError() throws {
        let t = try EmbeddedRESP()
        try? t.reply("+OK\r\n")
        #expect(!t.channel.isActive)
    }

    /// A timed-out command fails at its deadline but keeps its place: Redis may still run it,
    /// and its reply must reach the caller's late handler, never the next command's promise.
    @Test func aTimedOutCommandKeepsItsPlaceAndItsLateReplyArrives() throws {
        let t = try EmbeddedRESP(timeout: .milliseconds(100))
        let late = NIOLockedValueBox<[RESPValue]>([])
        let first = Outcome(t.connection.send(RESPCommand("INCR", "a")) { value, _ in late.withLockedValue { $0.append(value) } })
        t.channel.embeddedEventLoop.advanceTime(by: .milliseconds(60))
        let second = Outcome(t.connection.send(RESPCommand("GET", "b")))
        t.channel.embeddedEventLoop.advanceTime(by: .milliseconds(39))
        #expect(first.result == nil)
        #expect(!t.connection.isStalled)
        t.channel.embeddedEventLoop.advanceTime(by: .milliseconds(1))
        #expect(first.error?.code == .timeout)
        #expect(second.result == nil, "the second command has time left")
        #expect(t.channel.isActive, "the connection stays open for the late reply")
        #expect(t.connection.isStalled, "and takes nothing new meanwhile")
        try t.reply(":1\r\n")
        #expect(late.withLockedValue { $0 } == [.integer(1)], "the late reply went to the late handler")
        #expect(second.result == nil, "not to the next command")
        #expect(!t.connection.isStalled, "every overdue reply is in")
        try t.reply("$1\r\nx\r\n")
        #expect(second.value == .bulkString(ByteBuffer(string: "x")))
    }

    /// Overdue replies stay a prefix of the queue: the second command times out too, and
    /// the connection stays stalled until both late replies are in.
    @Test func everyOverdueReplyComesBeforeTheConnectionIsUsedAgain() throws {
        let t = try EmbeddedRESP(timeout: .milliseconds(100))
        let late = NIOLockedValueBox<[RESPValue]>([])
        let record: RESPConnection.LateReply = { value, _ in late.withLockedValue { $0.append(value) } }
        let first = Outcome(t.connection.send(RESPCommand("INCR", "a"), lateReply: record))
        t.channel.embeddedEventLoop.advanceTime(by: .milliseconds(10))
        let second = Outcome(t.connection.send(RESPCommand("INCR", "b"), lateReply: record))
        t.channel.embeddedEventLoop.advanceTime(by: .milliseconds(200))
        #expect(first.error?.code == .timeout && second.error?.code == .timeout)
        try t.reply(":1\r\n")
        #expect(t.connection.isStalled)
        try t.reply("-ERR late\r\n")
        #expect(late.withLockedValue { $0 } == [.integer(1), .error("ERR late")])
        #expect(!t.connection.isStalled)
        #expect(t.channel.isActive)
    }

    /// A stalled connection that never answers is closed at the end of the late-reply window.
    @Test func aConnectionSilentForTheLateReplyWindowIsClosed() throws {
        let t = try EmbeddedRESP(timeout: .milliseconds(100), lateReplyWindow: .seconds(1))
        let first = Outcome(t.connection.send(RESPCommand("GET", "a")))
        t.channel.embeddedEventLoop.advanceTime(by: .milliseconds(100))
        #expect(first.error?.code == .timeout)
        t.channel.embeddedEventLoop.advanceTime(by: .milliseconds(500))
        let second = Outcome(t.connection.send(RESPCommand("GET", "b")))
        t.channel.embeddedEventLoop.advanceTime(by: .milliseconds(499))
        #expect(t.channel.isActive)
        #expect(second.error?.code == .timeout)
        t.channel.embeddedEventLoop.advanceTime(by: .milliseconds(1))
        #expect(!t.channel.isActive, "a second after the first timeout")
    }

    /// A replaced connection closes once its last reply is in, not before.
    @Test func closeWhenAnsweredWaitsForTheReplies() throws {
        let t = try EmbeddedRESP(timeout: .milliseconds(100))
        let late = NIOLockedValueBox<[RESPValue]>([])
        _ = t.connection.send(RESPCommand("INCR", "a")) { value, _ in late.withLockedValue { $0.append(value) } }
        t.channel.embeddedEventLoop.advanceTime(by: .milliseconds(100))
        t.connection.closeWhenAnswered()
        #expect(t.channel.isActive)
        try t.reply(":7\r\n")
        #expect(late.withLockedValue { $0 } == [.integer(7)])
        #expect(!t.channel.isActive)
    }

    @Test func timerFollowsTheOldestCommand() throws {
        let t = try EmbeddedRESP(timeout: .milliseconds(100))
        let first = Outcome(t.connection.send(RESPCommand("GET", "a")))
        t.channel.embeddedEventLoop.advanceTime(by: .milliseconds(80))
        let second = Outcome(t.connection.send(RESPCommand("GET", "b")))
        try t.reply("$-1\r\n")
        #expect(first.value == .null)
        // The timer fires at 100 ms, finds the second command's deadline (180 ms) not yet due, re-arms.
        t.channel.embeddedEventLoop.advanceTime(by: .milliseconds(90))
        #expect(second.result == nil)
        #expect(t.channel.isActive)
        t.channel.embeddedEventLoop.advanceTime(by: .milliseconds(10))
        #expect(second.error?.code == .timeout)
    }

    @Test func answeredCommandsNeverTimeOut() throws {
        let t = try EmbeddedRESP(timeout: .milliseconds(100))
        for _ in 0..<10 {
            let o = Outcome(t.connection.send(RESPCommand("PING")))
            t.channel.embeddedEventLoop.advanceTime(by: .milliseconds(50))
            try t.reply("+PONG\r\n")
            #expect(o.value == .simpleString("PONG"))
        }
        t.channel.embeddedEventLoop.advanceTime(by: .seconds(1))
        #expect(t.channel.isActive)
    }

    @Test func closingFailsPendingWithShutdown() throws {
        let t = try EmbeddedRESP()
        let a = Outcome(t.connection.send(RESPCommand("GET", "a")))
        _ = t.connection.close() as EventLoopFuture<Void>
        #expect(a.error?.code == .shutdown)
        let b = Outcome(t.connection.send(RESPCommand("GET", "a")))
        #expect(b.error?.code == .shutdown)
    }

    @Test func remoteCloseFailsPending() throws {
        let t = try EmbeddedRESP()
        let a = Outcome(t.connection.send(RESPCommand("GET", "a")))
        t.channel.pipeline.fireChannelInactive()
        #expect(a.error?.code == .connectionClosed)
    }
}
