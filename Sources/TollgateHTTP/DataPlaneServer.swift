import Logging
import NIOCore
import NIOExtras
import NIOPosix
import ServiceLifecycle
import TollgateCore

/// The data-plane listener as a `Service`: binds, serves until graceful shutdown, then
/// stops accepting, lets in-flight requests finish and returns once every connection has
/// closed.
public struct DataPlaneServer<Store: KeyStore, Clock: WallClock>: Service {
    let shared: DataPlaneShared<Store, Clock>
    let group: any EventLoopGroup

    public init(
        configuration: DataPlaneConfiguration,
        store: Store,
        clock: Clock,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger
    ) {
        self.shared = DataPlaneShared(store: store, clock: clock, configuration: configuration, logger: logger)
        self.group = eventLoopGroup
    }

    public func run() async throws {
        let configuration = shared.configuration
        let quiesce = ServerQuiescingHelper(group: group)
        let shared = self.shared
        let channel: any Channel
        do {
            channel = try await ServerBootstrap(group: group)
                .serverChannelOption(.backlog, value: 1024)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .serverChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let sync = channel.pipeline.syncOperations
                        // Out of descriptors, accept fails at once and would be retried at
                        // once, spinning a core: the limiter stops that (see its notes).
                        try sync.addHandler(ConnectionLimiter(maximum: configuration.maxConnections))
                        try sync.addHandler(quiesce.makeServerChannelHandler(channel: channel))
                    }
                }
                .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
                .childChannelOption(.maxMessagesPerRead, value: 16)
                .childChannelOption(.writeBufferWaterMark, value: configuration.writeBufferWaterMark)
                .childChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try Self.configure(channel.pipeline.syncOperations, shared: shared)
                    }
                }
                .bind(host: configuration.host, port: configuration.port)
                .get()
        } catch {
            throw TollgateError.cannotListen(
                "the data plane", host: configuration.host, port: configuration.port, options: ("--host", "--port"), error: error)
        }
        if let address = channel.localAddress {
            // Debug: whoever runs the server announces it once every listener is up.
            shared.logger.debug("data plane listening", metadata: ["address": "\(address)"])
            configuration.onListening?(address)
        }

        try? await gracefulShutdown()

        shared.logger.info("data plane draining")
        let drained = group.next().makePromise(of: Void.self)
        quiesce.initiateShutdown(promise: drained)
        try await drained.futureResult.get()
    }

    /// The gateway's one handler per connection: it parses, orders and answers itself
    /// (``GatewayConnection``), with no HTTP codec or pipelining handler before it.
    static func configure(_ pipeline: ChannelPipeline.SynchronousOperations, shared: DataPlaneShared<Store, Clock>) throws {
        try pipeline.addHandler(GatewayConnection(shared: shared))
    }
}
