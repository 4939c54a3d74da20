import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import Synchronization
import TollgateCore

/// The control plane's listener: health, and the admin API when a token is configured.
///
/// It runs on its own address (loopback by default) so that operators can firewall it,
/// and on Hummingbird, whose per-request cost is fine off the hot path.
public enum AdminApplication {
    public struct Configuration: Sendable {
        public var host: String
        public var port: Int
        /// How long a connection may sit idle, or take to send its request, before it is
        /// closed; idle connections would otherwise hold descriptors forever.
        public var idleTimeout: Duration = .seconds(10)
        /// The most connections held at once (see ``AdminConnections``): the control plane
        /// is a handful of operators, scripts and scrapers, and every descriptor it holds is
        /// one the data plane cannot have.
        public var maxConnections: Int = Self.defaultMaxConnections
        /// The `Host` values answered besides addresses and `localhost` (see ``AllowedHosts``).
        public var allowedHosts = AllowedHosts()
        /// `GET /metrics` (see ``MetricsEndpoint``); without it the path answers `404`.
        public var metrics: MetricsEndpoint?
        /// The bearer token that opens `/admin/v1`; without one those paths answer `404`,
        /// so that an admin API nobody secured is never served.
        public var adminToken: AdminToken?

        public static let defaultMaxConnections = 64

        public init(host: String = "127.0.0.1", port: Int = 3001, idleTimeout: Duration = .seconds(10), adminToken: AdminToken? = nil) {
            self.host = host
            self.port = port
            self.idleTimeout = idleTimeout
            self.adminToken = adminToken
        }
    }

    /// The routes, separate from the listener so tests can drive them in process.
    ///
    /// - Parameter exports: where usage exports run (see ``ExportLane``); inline without one.
    public static func router<Store: KeyStore>(
        store: Store,
        adminToken: AdminToken? = nil,
        clock: some WallClock = SystemWallClock(),
        allowedHosts: AllowedHosts = AllowedHosts(),
        exports: ExportLane? = nil
    ) -> Router<AdminRequestContext> {
        let router = Router(context: AdminRequestContext.self)
        // Before the routes, so that it wraps them and the not-found answer alike.
        router.add(middleware: ProblemMiddleware())
        router.add(middleware: HostCheckMiddleware(allowed: allowedHosts))
        router.get("healthz") { _, _ in
            HealthStatus(status: "ok")
        }
        router.get("readyz") { _, _ -> Response in
            let ready = await store.isReady()
            let body = ready ? "{\"status\":\"ok\"}" : "{\"status\":\"unavailable\"}"
            return Response(
                status: ready ? .ok : .serviceUnavailable,
                headers: [.contentType: "application/json"],
                body: .init(byteBuffer: ByteBuffer(string: body))
            )
        }
        let admin = router.group("admin/v1")
        guard let adminToken else {
            // Said plainly, so that an operator who forgot the token knows what to do.
            admin.on("**", method: .get) { _, _ -> Response in throw AdminError.adminAPIOff }
            for method in [HTTPRequest.Method.post, .patch, .delete, .put] {
                admin.on("**", method: method) { _, _ -> Response in throw AdminError.adminAPIOff }
            }
            return router
        }
        // Before the token check: the document is the one in the public repository, and
        // tools (schemathesis, Swagger UI) load it without a secret.
        admin.get("openapi.json") { _, _ in
            Response(
                status: .ok,
                headers: [.contentType: "application/json", .cacheControl: "no-store"],
                body: .init(byteBuffer: ByteBuffer(string: OpenAPIDocument.json))
            )
        }
        admin.add(middleware: AdminAuthMiddleware(token: adminToken, refusals: RefusedLogins(clock: clock)))
        KeyRoutes(store: store, clock: clock, exports: exports).register(on: admin)
        return router
    }

    /// The control plane as a `Service`, on an event loop of its own (never the data
    /// plane's) with its exports on an ``ExportLane``; a failure to listen names the
    /// address and the options that set it, as the data plane's does.
    public static func make(
        configuration: Configuration,
        store: some KeyStore,
        logger: Logger,
        onServerRunning: @escaping @Sendable (any Channel) async -> Void = { _ in }
    ) -> some Service {
        AdminListener(configuration: configuration, logger: logger, onServerRunning: onServerRunning) { exports in
            router(store: store, adminToken: configuration.adminToken, allowedHosts: configuration.allowedHosts, exports: exports)
                .addMetrics(configuration.metrics)
        }
    }
}

/// Whether a listener got as far as listening: an error before that is a failure to bind.
final class ListeningFlag: Sendable {
    private let value = Atomic(false)
    func set() { value.store(true, ordering: .releasing) }
    var isSet: Bool { value.load(ordering: .acquiring) }
}

/// Runs the Hummingbird application on its own event loop, turning a failure to bind into a
/// ``TollgateError`` that names the control plane's address (Hummingbird's own says only
/// "Address in use").
struct AdminListener: Service {
    let configuration: AdminApplication.Configuration
    let logger: Logger
    let onServerRunning: @Sendable (any Channel) async -> Void
    let makeRouter: @Sendable (ExportLane) -> Router<AdminRequestContext>

    init(
        configuration: AdminApplication.Configuration, logger: Logger, onServerRunning: @escaping @Sendable (any Channel) async -> Void,
        makeRouter: @escaping @Sendable (ExportLane) -> Router<AdminRequestContext>
    ) {
        self.configuration = configuration
        self.logger = logger
        self.onServerRunning = onServerRunning
        self.makeRouter = makeRouter
    }

    func run() async throws {
        // One thread: the control plane's requests are few, and an export's bytes are
        // written here rather than on an event loop the data plane answers on.
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let exports = ExportLane()
        let connections = AdminConnections(maximum: configuration.maxConnections)
        let listening = ListeningFlag()
        let http1 = HTTP1Channel.Configuration(
            additionalChannelHandlers: [connections.tracker()], idleTimeout: TimeAmount(configuration.idleTimeout))
        let application = Application(
            router: makeRouter(exports),
            server: .http1(configuration: http1),
            configuration: .init(
                address: .hostname(configuration.host, port: configuration.port), serverName: "tollgate",
                availableConnectionsDelegate: connections.delegate),
            onServerRunning: { channel in
                listening.set()
                await onServerRunning(channel)
            },
            eventLoopGroupProvider: .shared(group),
            logger: logger
        )
        let outcome: Result<Void, any Error>
        do {
            try await application.run()
            outcome = .success(())
        } catch {
            outcome = .failure(error)
        }
        try? await exports.shutdown()
        try? await group.shutdownGracefully()
        if case .failure(let error) = outcome {
            guard !listening.isSet && !(error is CancellationError) else { throw error }
            throw TollgateError.cannotListen(
                "the control plane", host: configuration.host, port: configuration.port, options: ("--admin-host", "--admin-port"),
                error: error)
        }
    }
}

struct HealthStatus: ResponseEncodable {
    var status: String
}
