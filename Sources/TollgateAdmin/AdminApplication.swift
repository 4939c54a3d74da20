import Hummingbird
import Logging
import NIOCore
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
        public var idleTimeout: Duration = .seconds(60)
        /// `GET /metrics` (see ``MetricsEndpoint``); without it the path answers `404`.
        public var metrics: MetricsEndpoint?
        /// The bearer token that opens `/admin/v1`; without one those paths answer `404`,
        /// so that an admin API nobody secured is never served.
        public var adminToken: AdminToken?

        public init(host: String = "127.0.0.1", port: Int = 3001, idleTimeout: Duration = .seconds(60), adminToken: AdminToken? = nil) {
            self.host = host
            self.port = port
            self.idleTimeout = idleTimeout
            self.adminToken = adminToken
        }
    }

    /// The routes, separate from the listener so tests can drive them in process.
    public static func router<Store: KeyStore>(
        store: Store,
        adminToken: AdminToken? = nil,
        clock: some WallClock = SystemWallClock()
    ) -> Router<AdminRequestContext> {
        let router = Router(context: AdminRequestContext.self)
        // Before the routes, so that it wraps them and the not-found answer alike.
        router.add(middleware: ProblemMiddleware())
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
        if let adminToken {
            let admin = router.group("admin/v1")
            // Before the token check: the document is the one in the public repository, and
            // tools (schemathesis, Swagger UI) load it without a secret.
            admin.get("openapi.json") { _, _ in
                Response(
                    status: .ok,
                    headers: [.contentType: "application/json", .cacheControl: "no-store"],
                    body: .init(byteBuffer: ByteBuffer(string: OpenAPIDocument.json))
                )
            }
            admin.add(middleware: AdminAuthMiddleware(token: adminToken))
            KeyRoutes(store: store, clock: clock).register(on: admin)
        }
        return router
    }

    /// The control plane as a `Service`; a failure to listen names the address and the
    /// options that set it, as the data plane's does.
    public static func make(
        configuration: Configuration,
        store: some KeyStore,
        logger: Logger,
        onServerRunning: @escaping @Sendable (any Channel) async -> Void = { _ in }
    ) -> some Service {
        let listening = ListeningFlag()
        let application = Application(
            router: router(store: store, adminToken: configuration.adminToken).addMetrics(configuration.metrics),
            server: .http1(configuration: .init(idleTimeout: TimeAmount(configuration.idleTimeout))),
            configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "tollgate"),
            onServerRunning: { channel in
                listening.set()
                await onServerRunning(channel)
            },
            logger: logger
        )
        return AdminListener(application: application, configuration: configuration, listening: listening)
    }
}

/// Whether a listener got as far as listening: an error before that is a failure to bind.
final class ListeningFlag: Sendable {
    private let value = Atomic(false)
    func set() { value.store(true, ordering: .releasing) }
    var isSet: Bool { value.load(ordering: .acquiring) }
}

/// Runs the Hummingbird application, turning a failure to bind into a ``TollgateError``
/// that names the control plane's address (Hummingbird's own says only "Address in use").
struct AdminListener<App: ApplicationProtocol>: Service {
    let application: App
    let configuration: AdminApplication.Configuration
    let listening: ListeningFlag

    func run() async throws {
        do {
            try await application.run()
        } catch  where !listening.isSet && !(error is CancellationError) {
            throw TollgateError.cannotListen(
                "the control plane", host: configuration.host, port: configuration.port, options: ("--admin-host", "--admin-port"),
                error: error)
        }
    }
}

struct HealthStatus: ResponseEncodable {
    var status: String
}
