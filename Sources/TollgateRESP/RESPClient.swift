import Logging
import NIOCore
import NIOPosix
import Synchronization

/// A small pool of long-lived, pipelining connections to one Redis server.
///
/// Why a pool of only a few connections: each connection pipelines any number of commands,
/// so more connections add little throughput; two to four spread work over event loops and
/// keep serving while one of them reconnects.
///
/// Commands go to a connection on the caller's own event loop when there is one (no thread
/// hop, which matters when the client shares the server's `EventLoopGroup`), otherwise
/// round-robin. When no connection is up, commands fail at once with
/// ``RESPError/Code/unavailable``; the slots reconnect in the background with capped
/// exponential backoff and commands succeed again without the caller doing anything.
public final class RESPClient: Sendable {
    /// The configuration the pool was built with.
    public let configuration: RESPConfiguration
    private let eventLoopGroup: any EventLoopGroup
    private let slots: [RESPPoolSlot]
    private let counter = Atomic<Int>(0)
    private let isShutdown = Atomic<Bool>(false)
    private let started = Atomic<Bool>(false)
    private let logger: Logger

    /// Creates the pool without connecting; call ``start()`` (or ``connect()``).
    ///
    /// - Parameters:
    ///   - configuration: server and pool settings; validated here.
    ///   - eventLoopGroup: the group connections live on. Passing the HTTP server's group
    ///     lets each request use a connection on its own event loop.
    ///   - logger: used for connection-level events only (connects, losses, timeouts),
    ///     never per command, and never with secrets.
    public init(
        configuration: RESPConfiguration,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger
    ) throws(RESPError) {
        try configuration.validate()
        self.configuration = configuration
        self.eventLoopGroup = eventLoopGroup
        self.logger = logger
        self.slots = (0..<configuration.poolSize).map { index in
            RESPPoolSlot(index: index, configuration: configuration, eventLoop: eventLoopGroup.next(), logger: logger)
        }
    }

    /// Starts all connections in the background. The future succeeds as soon as one is up,
    /// or fails with the last error if every first attempt failed; either way the pool keeps
    /// retrying, so a server that is down at startup is picked up when it comes back.
    @discardableResult
    public func start() -> EventLoopFuture<Void> {
        let promise = self.eventLoopGroup.any().makePromise(of: Void.self)
        guard !self.started.exchange(true, ordering: .relaxed) else {
            promise.succeed()
            return promise.futureResult
        }
        let remaining = Mutex((count: self.slots.count, done: false))
        for slot in self.slots {
            slot.start { error in
                let outcome = remaining.withLock { r -> Bool? in
                    r.count -= 1
                    if r.done { return nil }
                    if error == nil {
                        r.done = true
                        return true
                    }
                    if r.count == 0 {
                        r.done = true
                        return false
                    }
                    return nil
                }
                switch outcome {
                case true?: promise.succeed()
                case false?: promise.fail(error ?? RESPError(.unavailable))
                case nil: break
                }
            }
        }
        return promise.futureResult
    }

    /// `async` form of ``start()``.
    public func connect() async throws(RESPError) {
        try await RESPConnection.typed(self.start())
    }

    // MARK: Commands

    /// Picks an open connection that is not stalled: one on the calling event loop if
    /// possible, else round-robin.
    public func connection() -> RESPConnection? {
        let count = self.slots.count
        let offset = count == 1 ? 0 : self.counter.wrappingAdd(1, ordering: .relaxed).oldValue
        if count > 1, let current = MultiThreadedEventLoopGroup.currentEventLoop {
            for i in 0..<count {
                let slot = self.slots[(offset &+ i) % count]
                if slot.eventLoop === current, let c = slot.connection, c.isActive, !c.isStalled { return c }
            }
        }
        for i in 0..<count {
            if let c = self.slots[(offset &+ i) % count].connection, c.isActive, !c.isStalled { return c }
        }
        return nil
    }

    private func unavailable<T>() -> EventLoopFuture<T> {
        let eventLoop = MultiThreadedEventLoopGroup.currentEventLoop ?? self.eventLoopGroup.any()
        if self.isShutdown.load(ordering: .relaxed) {
            return eventLoop.makeFailedFuture(RESPError(.shutdown, "client is shut down"))
        }
        return eventLoop.makeFailedFuture(RESPError(.unavailable, "no Redis connection is up; reconnecting"))
    }

    /// Sends one command on a pooled connection. Fails immediately with
    /// ``RESPError/Code/unavailable`` when no connection is up. The future completes on the
    /// chosen connection's event loop, which is the caller's own loop whenever the pool has a
    /// connection there (share the `EventLoopGroup` to get that); otherwise `hop(to:)` as needed.
    ///
    /// - Parameter lateReply: receives the reply if it arrives after the command timed out
    ///   (see ``RESPConnection/send(_:lateReply:)``).
    public func send(_ command: RESPCommand, lateReply: RESPConnection.LateReply? = nil) -> EventLoopFuture<RESPValue> {
        guard let connection = self.connection() else { return self.unavailable() }
        return connection.send(command, lateReply: lateReply)
    }

    /// `async` form of ``send(_:)``.
    public func execute(_ command: RESPCommand) async throws(RESPError) -> RESPValue {
        try await RESPConnection.typed(self.send(command))
    }

    /// Sends the commands in one write on one connection; results are per command, in order.
    public func pipeline(_ commands: [RESPCommand]) -> EventLoopFuture<[Result<RESPValue, RESPError>]> {
        guard let connection = self.connection() else {
            let eventLoop = MultiThreadedEventLoopGroup.currentEventLoop ?? self.eventLoopGroup.any()
            let error =
                self.isShutdown.load(ordering: .relaxed)
                ? RESPError(.shutdown, "client is shut down") : RESPError(.unavailable, "no Redis connection is up; reconnecting")
            return eventLoop.makeSucceededFuture(commands.map { _ in .failure(error) })
        }
        return connection.pipeline(commands)
    }

    /// `async` form of ``pipeline(_:)``.
    public func executePipeline(_ commands: [RESPCommand]) async -> [Result<RESPValue, RESPError>] {
        (try? await self.pipeline(commands).get()) ?? []
    }

    /// Runs a Lua script by hash (EVALSHA), falling back to EVAL only when the server
    /// answers `NOSCRIPT` (script cache flushed, failover, restart), so the script body is
    /// sent once per server lifetime rather than on every call.
    ///
    /// - Parameter lateReply: receives the script's reply if it arrives after the call timed
    ///   out: Redis runs a script it has received even when its caller stopped waiting.
    public func evalScript(
        _ script: RESPScript, keys: [RESPArgument] = [], args: [RESPArgument] = [], lateReply: RESPConnection.LateReply? = nil
    ) -> EventLoopFuture<RESPValue> {
        script.run(keys: keys, args: args) { self.send($0, lateReply: lateReply) }
    }

    /// `async` form of ``evalScript(_:keys:args:)``.
    public func executeScript(_ script: RESPScript, keys: [RESPArgument] = [], args: [RESPArgument] = []) async throws(RESPError)
        -> RESPValue
    {
        try await RESPConnection.typed(self.evalScript(script, keys: keys, args: args))
    }

    // MARK: Shutdown

    /// Stops reconnecting and closes every connection. Commands still queued fail with
    /// ``RESPError/Code/shutdown``; later commands fail the same way. Idempotent.
    public func shutdown() -> EventLoopFuture<Void> {
        self.isShutdown.store(true, ordering: .relaxed)
        let futures = self.slots.map { $0.shutdown() }
        return EventLoopFuture.andAllComplete(futures, on: self.eventLoopGroup.any())
    }

    /// `async` form of ``shutdown()``.
    public func close() async {
        try? await self.shutdown().get()
    }
}
