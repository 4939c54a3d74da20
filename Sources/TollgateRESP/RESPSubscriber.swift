import Logging
import NIOCore
import NIOPosix
import Synchronization

/// Pub/sub on its own dedicated connection, which survives reconnects.
///
/// A subscribed connection cannot run normal commands, so it is kept apart from
/// ``RESPClient``'s pool. Subscriptions are remembered and re-issued after every reconnect.
/// Messages published while the connection was down are lost (Redis does not queue them),
/// which is why `onReconnect` exists: a caller that uses pub/sub for cache invalidation must
/// re-read whatever it caches when told that it reconnected.
public final class RESPSubscriber: Sendable {
    /// Receives messages on the connection's event loop; must not block.
    public typealias Handler = @Sendable (RESPPubSubMessage) -> Void

    private let slot: RESPPoolSlot
    private final class Registry: Sendable {
        let handlers = Mutex<[String: Handler]>([:])
    }

    private let registry: Registry
    private let logger: Logger

    /// - Parameters:
    ///   - configuration: the server; `poolSize` is ignored (one connection).
    ///   - onReconnect: called on the connection's event loop after a lost connection was
    ///     replaced and every subscription re-issued.
    public init(
        configuration: RESPConfiguration,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger,
        onReconnect: @escaping @Sendable () -> Void = {}
    ) throws(RESPError) {
        try configuration.validate()
        let registry = Registry()
        self.registry = registry
        self.logger = logger
        self.slot = RESPPoolSlot(
            index: 0,
            configuration: configuration,
            eventLoop: eventLoopGroup.next(),
            logger: logger,
            pubSubHandler: { value in
                guard let message = RESPPubSubMessage(value) else { return }
                let key = message.pattern ?? message.channel
                if let handler = registry.handlers.withLock({ $0[key] }) { handler(message) }
            },
            onConnect: { connection, isReconnect in
                let channels = registry.handlers.withLock { Array($0.keys) }
                guard !channels.isEmpty else {
                    if isReconnect { onReconnect() }
                    return
                }
                // One SUBSCRIBE per channel: each gets exactly one confirmation reply.
                let commands = channels.map { RESPCommand("SUBSCRIBE", .string($0)) }
                connection.pipeline(commands).whenSuccess { results in
                    if results.contains(where: { if case .failure = $0 { return true } else { return false } }) {
                        logger.warning("redis resubscribe failed")
                    }
                    if isReconnect { onReconnect() }
                }
            }
        )
    }

    /// Connects in the background; the future reports the first attempt (the subscriber
    /// keeps retrying either way).
    @discardableResult
    public func start() -> EventLoopFuture<Void> {
        let promise = self.slot.eventLoop.makePromise(of: Void.self)
        self.slot.start { error in
            if let error { promise.fail(error) } else { promise.succeed() }
        }
        return promise.futureResult
    }

    /// `async` form of ``start()``.
    public func connect() async throws(RESPError) {
        try await RESPConnection.typed(self.start())
    }

    /// Subscribes `handler` to `channel` (replacing an earlier handler for it). Handlers run
    /// on the connection's event loop and must not block.
    ///
    /// The subscription is remembered even if the future fails with
    /// ``RESPError/Code/unavailable``: it is then made as soon as the connection is back.
    public func subscribe(_ channel: String, handler: @escaping Handler) -> EventLoopFuture<Void> {
        self.registry.handlers.withLock { $0[channel] = handler }
        return self.sendOnConnection(RESPCommand("SUBSCRIBE", .string(channel)))
    }

    /// Stops delivering `channel`.
    public func unsubscribe(_ channel: String) -> EventLoopFuture<Void> {
        self.registry.handlers.withLock { $0[channel] = nil }
        return self.sendOnConnection(RESPCommand("UNSUBSCRIBE", .string(channel)))
    }

    /// `async` form of ``subscribe(_:handler:)``.
    public func subscribe(_ channel: String, handler: @escaping Handler) async throws(RESPError) {
        try await RESPConnection.typed(self.subscribe(channel, handler: handler) as EventLoopFuture<Void>)
    }

    private func sendOnConnection(_ command: RESPCommand) -> EventLoopFuture<Void> {
        guard let connection = self.slot.connection, connection.isActive else {
            return self.slot.eventLoop.makeFailedFuture(RESPError(.unavailable, "pub/sub connection is down; will subscribe on reconnect"))
        }
        return connection.send(command).map { _ in }
    }

    /// Closes the connection and stops reconnecting.
    public func shutdown() -> EventLoopFuture<Void> {
        self.slot.shutdown()
    }

    /// `async` form of ``shutdown()``.
    public func close() async {
        try? await self.shutdown().get()
    }
}
