import Logging
import NIOCore
import NIOPosix
import Synchronization

/// One connection to Redis: a NIO channel with a single FIFO queue of pending replies.
///
/// Any number of commands may be in flight at once (pipelining); replies are matched in
/// order. `send` is safe from any thread; called on the channel's own event loop it goes
/// straight to the handler with no hop and no extra allocation besides the promise, which is
/// what a per-request caller on that loop wants. Off the loop it costs one `execute`.
///
/// A connection never reconnects itself: once closed it stays closed and fails every command
/// with ``RESPError/Code/connectionClosed``. ``RESPClient`` owns reconnecting.
public final class RESPConnection: Sendable {
    /// The underlying channel.
    public let channel: any Channel
    /// The channel's event loop; futures returned by this connection complete on it.
    public var eventLoop: any EventLoop { self.channel.eventLoop }
    /// The protocol agreed in the handshake (RESP2 if the server refused `HELLO 3`).
    public let protocolVersion: RESPProtocolVersion
    private let handler: NIOLoopBound<RESPChannelHandler>
    private let health: RESPConnectionHealth

    init(
        channel: any Channel, handler: NIOLoopBound<RESPChannelHandler>, health: RESPConnectionHealth, protocolVersion: RESPProtocolVersion
    ) {
        self.channel = channel
        self.handler = handler
        self.health = health
        self.protocolVersion = protocolVersion
    }

    /// Receives a reply that arrived after its command timed out, with the connection it
    /// came on: that connection has just shown that it answers, so a command that must
    /// reach Redis (undoing what the late command did) can go there even while the pool has
    /// no other connection up.
    public typealias LateReply = @Sendable (RESPValue, RESPConnection) -> Void

    /// Wraps an already set-up channel whose pipeline holds a handler made by
    /// ``makeChannelHandler``-style setup; used by tests on embedded channels.
    static func wrap(channel: any Channel, protocolVersion: RESPProtocolVersion = .resp2) throws -> RESPConnection {
        let handler = try channel.pipeline.syncOperations.handler(type: RESPChannelHandler.self)
        return RESPConnection(
            channel: channel, handler: NIOLoopBound(handler, eventLoop: channel.eventLoop), health: handler.health,
            protocolVersion: protocolVersion)
    }

    // MARK: Connecting

    /// Opens a TCP connection and runs the handshake (AUTH, HELLO 3, SELECT, or PING when
    /// none is configured) as one pipelined round trip, all bounded by the connect timeout.
    ///
    /// Even without credentials a PING is sent, so a connection is only handed out once the
    /// server has proven it answers, not merely that its kernel accepted the socket.
    public static func connect(
        configuration: RESPConfiguration,
        eventLoop: any EventLoop,
        logger: Logger
    ) -> EventLoopFuture<RESPConnection> {
        Self.connect(configuration: configuration, eventLoop: eventLoop, logger: logger, pubSubHandler: nil)
    }

    /// With a `pubSubHandler`, the channel handler starts in pub/sub mode: published
    /// messages go to it, subscription confirmations answer their commands.
    static func connect(
        configuration: RESPConfiguration,
        eventLoop: any EventLoop,
        logger: Logger,
        pubSubHandler: (@Sendable (RESPValue) -> Void)?
    ) -> EventLoopFuture<RESPConnection> {
        do {
            try configuration.validate()
        } catch {
            return eventLoop.makeFailedFuture(error)
        }
        var logger = logger
        logger[metadataKey: "redis.host"] = "\(configuration.host):\(configuration.port)"
        let connectLogger = logger
        let bootstrap = ClientBootstrap(group: eventLoop)
            .connectTimeout(configuration.connectTimeout)
            .channelOption(.socketOption(.so_keepalive), value: 1)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let handler = RESPChannelHandler(
                        commandTimeout: configuration.commandTimeout,
                        lateReplyWindow: configuration.lateReplyWindow,
                        limits: configuration.decoderLimits,
                        logger: connectLogger
                    )
                    if let pubSubHandler {
                        handler.pubSubMode = true
                        handler.onPush = pubSubHandler
                    }
                    try channel.pipeline.syncOperations.addHandler(handler)
                }
            }
        let deadline = eventLoop.now + configuration.connectTimeout
        return bootstrap.connect(host: configuration.host, port: configuration.port)
            .flatMapError { error in
                eventLoop.makeFailedFuture(Self.connectError(error))
            }
            .flatMapThrowing { channel -> RESPConnection in
                try RESPConnection.wrap(channel: channel)
            }
            .flatMap { connection in
                let remaining = Swift.max(deadline - eventLoop.now, .milliseconds(1))
                return connection.handshake(configuration, timeout: remaining, logger: connectLogger)
                    .flatMapError { error in
                        connection.closeNow(error: RESPError(.connectionClosed, "handshake failed"))
                        return eventLoop.makeFailedFuture(error)
                    }
            }
            .hop(to: eventLoop)
    }

    /// `async` variant of ``connect(configuration:eventLoop:logger:)``.
    public static func connect(
        configuration: RESPConfiguration,
        eventLoop: any EventLoop = MultiThreadedEventLoopGroup.singleton.any(),
        logger: Logger
    ) async throws(RESPError) -> RESPConnection {
        try await Self.typed(
            Self.connect(configuration: configuration, eventLoop: eventLoop, logger: logger) as EventLoopFuture<RESPConnection>)
    }

    private static func connectError(_ error: any Error) -> RESPError {
        if let e = error as? RESPError { return e }
        if let e = error as? ChannelError, case .connectTimeout = e {
            return RESPError(.connectTimeout, "TCP connect timed out")
        }
        return RESPError(.connectionFailed, "\(error)")
    }

    private func handshake(_ config: RESPConfiguration, timeout: TimeAmount, logger: Logger) -> EventLoopFuture<RESPConnection> {
        var commands: [RESPCommand] = []
        var authIndex: Int?
        var helloIndex: Int?
        var selectIndex: Int?
        if let password = config.password {
            authIndex = commands.count
            if let user = config.username {
                commands.append(RESPCommand("AUTH", .string(user), .string(password)))
            } else {
                commands.append(RESPCommand("AUTH", .string(password)))
            }
        }
        if config.protocolVersion == .resp3 {
            helloIndex = commands.count
            commands.append(RESPCommand("HELLO", 3))
        }
        if config.database != 0 {
            selectIndex = commands.count
            commands.append(RESPCommand("SELECT", .integer(config.database)))
        }
        if commands.isEmpty {
            commands.append(RESPCommand("PING"))
        }
        let (authAt, helloAt, selectAt) = (authIndex, helloIndex, selectIndex)
        return self.pipeline(commands, timeout: timeout).flatMapThrowing { results -> RESPConnection in
            let (authIndex, helloIndex, selectIndex) = (authAt, helloAt, selectAt)
            func timeoutToConnect(_ e: RESPError) -> RESPError {
                e.code == .timeout ? RESPError(.connectTimeout, "handshake timed out") : e
            }
            if let authIndex, case .failure(let e) = results[authIndex] {
                if e.code == .serverError || e.code == .authenticationFailed {
                    logger.warning("redis AUTH failed", metadata: ["user": "\(config.username ?? "default")"])
                    throw RESPError(.authenticationFailed, e.message)
                }
                throw timeoutToConnect(e)
            }
            var version = config.protocolVersion
            if let helloIndex, case .failure(let e) = results[helloIndex] {
                guard e.code == .serverError else { throw timeoutToConnect(e) }
                logger.debug("server refused HELLO 3; using RESP2", metadata: ["error": "\(e.message)"])
                version = .resp2
            }
            for (i, result) in results.enumerated() where i != authIndex && i != helloIndex {
                if case .failure(let e) = result {
                    if i == selectIndex && e.code == .serverError {
                        throw RESPError(.serverError, "SELECT \(config.database) failed: \(e.message)")
                    }
                    throw timeoutToConnect(e)
                }
            }
            logger.debug("redis connection ready", metadata: ["protocol": "RESP\(version.rawValue)"])
            if version == self.protocolVersion { return self }
            return RESPConnection(channel: self.channel, handler: self.handler, health: self.health, protocolVersion: version)
        }
    }

    // MARK: Sending

    /// Sends one command; the future completes on this connection's event loop with the
    /// reply, or fails with a ``RESPError`` (a `-ERR` reply fails with ``RESPError/Code/serverError``).
    ///
    /// - Parameter lateReply: if the command times out, the reply that Redis may still send
    ///   later goes here (error replies included, as ``RESPValue/error(_:)``); it is not
    ///   called if the connection closes first.
    public func send(_ command: RESPCommand, lateReply: LateReply? = nil) -> EventLoopFuture<RESPValue> {
        let promise = self.eventLoop.makePromise(of: RESPValue.self)
        let late = lateReply.map { body in { @Sendable (value: RESPValue) in body(value, self) } }
        if self.eventLoop.inEventLoop {
            self.handler.value.send(command, promise: promise, lateReply: late)
        } else {
            self.eventLoop.execute {
                self.handler.value.send(command, promise: promise, lateReply: late)
            }
        }
        return promise.futureResult
    }

    /// Runs a script on this connection (EVALSHA, then EVAL on `NOSCRIPT`), as
    /// ``RESPClient/evalScript(_:keys:args:lateReply:)`` does on the pool.
    public func evalScript(
        _ script: RESPScript, keys: [RESPArgument] = [], args: [RESPArgument] = [], lateReply: LateReply? = nil
    ) -> EventLoopFuture<RESPValue> {
        script.run(keys: keys, args: args) { self.send($0, lateReply: lateReply) }
    }

    /// `async` form of ``send(_:)``.
    public func execute(_ command: RESPCommand) async throws(RESPError) -> RESPValue {
        try await Self.typed(self.send(command))
    }

    /// Sends several commands with one write and one flush (one syscall, one round trip) and
    /// returns every reply in order. Errors are per command, so one failing command (e.g.
    /// `NOSCRIPT`) does not hide the others' results.
    public func pipeline(_ commands: [RESPCommand]) -> EventLoopFuture<[Result<RESPValue, RESPError>]> {
        self.pipeline(commands, timeout: nil)
    }

    /// `async` form of ``pipeline(_:)``.
    public func executePipeline(_ commands: [RESPCommand]) async -> [Result<RESPValue, RESPError>] {
        // The future itself never fails; per-command errors are in the results.
        (try? await self.pipeline(commands).get()) ?? []
    }

    func pipeline(_ commands: [RESPCommand], timeout: TimeAmount?) -> EventLoopFuture<[Result<RESPValue, RESPError>]> {
        let eventLoop = self.eventLoop
        let promises = commands.map { _ in eventLoop.makePromise(of: RESPValue.self) }
        if eventLoop.inEventLoop {
            self.handler.value.send(batch: commands, timeout: timeout, promises: promises)
        } else {
            eventLoop.execute {
                self.handler.value.send(batch: commands, timeout: timeout, promises: promises)
            }
        }
        return EventLoopFuture.whenAllComplete(promises.map(\.futureResult), on: eventLoop).map { results in
            results.map { $0.mapError(Self.asRESPError) }
        }
    }

    // MARK: Closing

    /// Closes the connection; queued commands fail with ``RESPError/Code/shutdown``.
    public func close() -> EventLoopFuture<Void> {
        self.closeNow(error: RESPError(.shutdown, "connection closed by caller"))
        return self.channel.closeFuture
    }

    /// `async` form of ``close()``.
    public func close() async {
        try? await (self.close() as EventLoopFuture<Void>).get()
    }

    /// Completes when the channel has closed, for whatever reason.
    public var closeFuture: EventLoopFuture<Void> { self.channel.closeFuture }

    /// Whether commands can currently be sent (a hint: the connection may close any time).
    public var isActive: Bool { self.channel.isActive }

    /// Whether a command timed out and its reply has not come yet: the pool then sends this
    /// connection nothing new (see ``RESPConfiguration/lateReplyWindow``).
    public var isStalled: Bool { self.health.stalled.load(ordering: .relaxed) }

    /// Calls `body` on the event loop whenever the connection becomes stalled.
    func whenStalled(_ body: @escaping @Sendable () -> Void) {
        if self.eventLoop.inEventLoop {
            self.handler.value.onStall = body
        } else {
            self.eventLoop.execute { self.handler.value.onStall = body }
        }
    }

    /// Closes once every command sent has been answered, or when the late-reply window of a
    /// stalled connection ends: for a connection the pool has replaced.
    func closeWhenAnswered() {
        if self.eventLoop.inEventLoop {
            self.handler.value.closeWhenAnswered()
        } else {
            self.eventLoop.execute { self.handler.value.closeWhenAnswered() }
        }
    }

    func closeNow(error: RESPError) {
        if self.eventLoop.inEventLoop {
            self.handler.value.close(with: error)
        } else {
            self.eventLoop.execute { self.handler.value.close(with: error) }
        }
    }

    // MARK: Helpers

    static func asRESPError(_ error: any Error) -> RESPError {
        if let e = error as? RESPError { return e }
        return RESPError(.connectionClosed, "\(error)")
    }

    static func typed<T: Sendable>(_ future: EventLoopFuture<T>) async throws(RESPError) -> T {
        do {
            return try await future.get()
        } catch {
            throw Self.asRESPError(error)
        }
    }
}
