import ArgumentParser
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import Synchronization
import TollgateAdmin
import TollgateCore
import TollgateHTTP
import TollgateRedis
import TollgateSQLite
import UnixSignals

/// `tollgate serve`: the data plane and the control plane over one store.
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the gateway (the default command).",
        discussion: "SIGTERM or SIGINT stop accepting, finish in-flight requests, commit their usage and exit 0."
    )

    @Option(help: "Data-plane address.") var host = "127.0.0.1"
    @Option(help: "Data-plane port (0 picks a free one).") var port = 3000
    @Option(name: .customLong("admin-host"), help: "Control-plane (health, admin) address.") var adminHost = "127.0.0.1"
    @Option(name: .customLong("admin-port"), help: "Control-plane port (0 picks a free one).") var adminPort = 3001
    @Flag(
        help:
            "Create the demo keys demo5, demo10, demo100 and demo1000 (scope *, N/total), or restore them to their full quota, and print them."
    )
    var demo = false
    @Option(
        name: .customLong("idle-timeout"),
        help: "Seconds a connection may idle, or take to send its request header fields, before it is closed."
    )
    var idleTimeout = 60
    @Option(
        name: .customLong("max-connections"),
        help:
            "Most data-plane connections held at once (default: three quarters of the open-file limit, which serve raises to its hard limit)."
    )
    var maxConnections: Int?
    @Option(
        name: .customLong("store-timeout"),
        help: "Milliseconds a store commit or lookup may take before its requests answer 503 store_unavailable."
    )
    var storeTimeout = 2000
    @Option(
        name: .customLong("config"),
        help: "A route file (YAML; 'tollgate routes check FILE' validates it). Without one, the built-in api1..api3. SIGHUP reloads it."
    )
    var config: String?
    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel = "info"
    @OptionGroup var storeOptions: StoreOptions

    func validate() throws {
        guard (0...65535).contains(port), (0...65535).contains(adminPort) else {
            throw ValidationError("ports must be between 0 and 65535")
        }
        guard idleTimeout > 0 else { throw ValidationError("--idle-timeout must be a positive number of seconds") }
        guard storeTimeout > 0 else { throw ValidationError("--store-timeout must be a positive number of milliseconds") }
        if let maxConnections, maxConnections < 1 {
            throw ValidationError("--max-connections must be at least 1")
        }
        guard Logger.Level(rawValue: logLevel) != nil else {
            throw ValidationError("--log-level must be one of trace, debug, info, notice, warning, error, critical")
        }
    }

    func run() async throws {
        let level = Logger.Level(rawValue: logLevel) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "tollgate")
        try await reportingErrors {
            switch try storeOptions.location() {
            case .memory:
                try await serve(store: MemoryKeyStore(), logger: logger)
            case .sqlite(let path, let synchronous):
                let lock = try ServeLock(storePath: path)
                var configuration = SQLiteKeyStore.Configuration(path: path, synchronous: synchronous)
                configuration.operationTimeout = .milliseconds(storeTimeout)
                let store = try SQLiteKeyStore(configuration: configuration, logger: logger)
                try await serve(store: store, logger: logger)
                _ = consume lock
            case .redis(let configuration):
                let store = try RedisKeyStore(configuration: .init(redis: configuration), logger: logger)
                try await store.connect()
                try await serve(store: store, logger: logger)
            }
        }
    }

    /// Generic over the store so that the data plane is specialized for it.
    ///
    /// Start-up is ordered so that nothing says the server is up before it is: the demo keys
    /// are restored, the data plane binds, then the control plane, and only then are both
    /// addresses printed. A failure at any step names what failed and stops the rest.
    private func serve<Store: KeyStore>(store: Store, logger: Logger) async throws {
        let demoLines = demo ? try await DemoKeys.restore(in: store) : []

        var dataPlane = DataPlaneConfiguration(host: host, port: port)
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = []
        if let config {
            do {
                dataPlane.routes = LiveRoutes(try RouteFile.load(path: config))
            } catch {
                let lines = error.problems.map { problem in
                    problem.line.map { "\(config):\($0): \(problem.message)" } ?? "\(config): \(problem.message)"
                }
                throw TollgateError(
                    .invalidInput,
                    "the route file has problems:\n" + lines.joined(separator: "\n")
                        + "\nfix them ('tollgate routes check \(config)' lists them) and start again"
                )
            }
            services.append(.init(service: RouteReloader(path: config, routes: dataPlane.routes, logger: logger)))
        }
        dataPlane.idleTimeout = .seconds(Int64(idleTimeout))
        let descriptorLimit = DescriptorLimit.raiseToHardLimit()
        dataPlane.maxConnections = maxConnections ?? DataPlaneConfiguration.defaultMaxConnections(descriptorLimit: descriptorLimit)
        let (dataPlaneBound, bound) = AsyncStream<SocketAddress>.makeStream()
        let dataAddress = AddressBox()
        dataPlane.onListening = { address in
            dataAddress.set(address)
            bound.yield(address)
            bound.finish()
        }
        let server = DataPlaneServer(configuration: dataPlane, store: store, clock: SystemWallClock(), logger: logger)
        let admin = AdminApplication.make(
            configuration: .init(host: adminHost, port: adminPort, idleTimeout: .seconds(idleTimeout)),
            store: store,
            logger: logger,
            onServerRunning: { channel in
                // Both listeners are up: the data plane bound before the control plane began.
                guard let data = dataAddress.value else { return }
                let host = data.ipAddress ?? "127.0.0.1"
                let port = data.port ?? 0
                let adminAddress = channel.localAddress
                let adminURL = "http://\(urlHost(adminAddress?.ipAddress ?? "127.0.0.1")):\(adminAddress?.port ?? 0)"
                for line in demoLines { emit(line) }
                emit("Data plane: http://\(urlHost(host)):\(port)")
                emit("Control plane: \(adminURL)")
                if !demoLines.isEmpty { DemoKeys.printTryLine(host: host, port: port) }
                emit("Serving; Ctrl-C (SIGINT) or SIGTERM stops after in-flight requests.")
                logger.info("serving", metadata: ["data": "\(data)", "control": "\(adminAddress.map { "\($0)" } ?? "?")"])
            }
        )
        let group = ServiceGroup(
            configuration: .init(
                services: [
                    .init(service: store),
                    .init(service: server),
                    .init(service: StartsAfter(dataPlaneBound, admin)),
                ] + services,
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger
            )
        )
        try await group.run()
        logger.info("stopped")
    }
}

/// The data plane's bound address, for the announcement.
final class AddressBox: Sendable {
    private let address = Mutex<SocketAddress?>(nil)
    func set(_ value: SocketAddress) { address.withLock { $0 = value } }
    var value: SocketAddress? { address.withLock { $0 } }
}

/// Runs `service` once the first value arrives on `signal` (the data plane's address), so
/// that the control plane binds only after the data plane has, and a failure of either is
/// the first thing printed. Returns without running it if shutdown comes first.
struct StartsAfter<Wrapped: Service>: Service {
    let signal: AsyncStream<SocketAddress>
    let service: Wrapped

    init(_ signal: AsyncStream<SocketAddress>, _ service: Wrapped) {
        self.signal = signal
        self.service = service
    }

    func run() async throws {
        let signal = self.signal
        let arrived = await cancelWhenGracefulShutdown { await signal.first(where: { _ in true }) != nil }
        guard arrived == true, !Task.isCancelled else { return }
        try await service.run()
    }
}

/// A host as it appears in a URL: IPv6 addresses in brackets.
func urlHost(_ host: String) -> String {
    host.contains(":") ? "[\(host)]" : host
}
