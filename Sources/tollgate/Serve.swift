import ArgumentParser
import Foundation
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
        help:
            "Milliseconds a store commit, lookup or Redis command may take before its requests answer 503 store_unavailable (a Redis URL's ?timeout= wins)."
    )
    var storeTimeout = 2000
    @Option(
        name: .customLong("config"),
        help:
            "A route file (YAML; 'tollgate routes check FILE' validates it). Without one, the built-in api1..api3. Reloaded when it changes, or on SIGHUP."
    )
    var config: String?
    @Option(
        name: .customLong("admin-token-file"),
        help: ArgumentHelp(
            "A file holding the admin API's bearer token (one line), made with a new token (mode 0600) if missing. Without a token (this, TOLLGATE_ADMIN_TOKEN or --admin-token), /admin/v1 answers 404.",
            valueName: "PATH")
    )
    var adminTokenFile: String?
    @Option(
        name: .customLong("admin-token"),
        help: ArgumentHelp(
            "The admin API's bearer token. Visible to every user in 'ps' while the server runs: prefer --admin-token-file or TOLLGATE_ADMIN_TOKEN.",
            valueName: "TOKEN")
    )
    var adminToken: String?
    @Option(
        name: .customLong("admin-max-connections"),
        help: "Most control-plane connections held at once (default 64); at the cap the one idle longest is closed."
    )
    var adminMaxConnections: Int?
    @Option(
        name: .customLong("admin-idle-timeout"),
        help: "Seconds a control-plane connection may idle, or take to send its request (default 10, or --idle-timeout if shorter)."
    )
    var adminIdleTimeout: Int?
    @Option(
        name: .customLong("admin-allowed-host"),
        help: ArgumentHelp(
            "A Host name the control plane answers besides IP addresses and localhost (repeatable; * for any): a guard against DNS rebinding.",
            valueName: "NAME")
    )
    var adminAllowedHosts: [String] = []
    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel = "info"
    @Option(
        name: .customLong("event-loops"),
        help:
            "Event-loop threads serving both listeners (default: one per core). On a box shared with a load generator or proxy, fewer threads than cores avoid time-slicing latency."
    )
    var eventLoops: Int?
    @OptionGroup var storeOptions: StoreOptions
    @OptionGroup var monitoring: MonitoringOptions

    func validate() throws {
        guard (0...65535).contains(port), (0...65535).contains(adminPort) else {
            throw ValidationError("ports must be between 0 and 65535")
        }
        guard idleTimeout > 0 else { throw ValidationError("--idle-timeout must be a positive number of seconds") }
        guard storeTimeout > 0 else { throw ValidationError("--store-timeout must be a positive number of milliseconds") }
        if adminToken != nil && adminTokenFile != nil {
            throw ValidationError("give the admin token once: --admin-token-file or --admin-token, not both")
        }
        if let maxConnections, maxConnections < 1 {
            throw ValidationError("--max-connections must be at least 1")
        }
        if let adminMaxConnections, adminMaxConnections < 1 {
            throw ValidationError("--admin-max-connections must be at least 1")
        }
        if let adminIdleTimeout, adminIdleTimeout < 1 {
            throw ValidationError("--admin-idle-timeout must be a positive number of seconds")
        }
        if let eventLoops, eventLoops < 1 { throw ValidationError("--event-loops must be at least 1") }
        guard Logger.Level(rawValue: logLevel) != nil else {
            throw ValidationError("--log-level must be one of trace, debug, info, notice, warning, error, critical")
        }
    }

    func run() async throws {
        // Before anything touches the shared event-loop group, which every listener and
        // client here uses.
        if let eventLoops { NIOSingletons.groupLoopCountSuggestion = eventLoops }
        let level = Logger.Level(rawValue: logLevel) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "tollgate")
        let telemetry = Telemetry()
        try await reportingErrors {
            let token = try AdminTokenSource.read(
                argument: adminToken, file: adminTokenFile, environment: ProcessInfo.processInfo.environment["TOLLGATE_ADMIN_TOKEN"])
            let storeLocation = try storeOptions.location(storeTimeout: .milliseconds(Int64(storeTimeout)))
            var warnings = token.warnings
            if case .sqlite(let path, _) = storeLocation, let warning = SQLiteFileMode.warning(path: path) { warnings.append(warning) }
            switch storeLocation {
            case .memory:
                try await serve(store: MemoryKeyStore(), telemetry: telemetry, logger: logger, token: token, warnings: warnings)
            case .sqlite(let path, let synchronous):
                let lock = try ServeLock(storePath: path)
                var configuration = SQLiteKeyStore.Configuration(path: path, synchronous: synchronous)
                configuration.operationTimeout = .milliseconds(storeTimeout)
                configuration.metrics = telemetry.storeMetrics("sqlite")
                let store = try SQLiteKeyStore(configuration: configuration, logger: logger)
                try await serve(
                    store: store, telemetry: telemetry, heldKeys: { store.heldKeyCount }, logger: logger, token: token, warnings: warnings)
                _ = consume lock
            case .redis(var configuration):
                configuration.metrics = telemetry.storeMetrics("redis")
                let store = try RedisKeyStore(configuration: configuration, logger: logger)
                try await store.connect()
                try await serve(store: store, telemetry: telemetry, logger: logger, token: token, warnings: warnings)
            }
        }
    }

    /// Generic over the store so that the data plane is specialized for it.
    ///
    /// Start-up is ordered so that nothing says the server is up before it is: the demo keys
    /// are restored, the data plane binds, then the control plane, and only then are both
    /// addresses printed. A failure at any step names what failed and stops the rest.
    private func serve<Store: KeyStore>(
        store: Store, telemetry: Telemetry, heldKeys: (@Sendable () -> Int)? = nil, logger: Logger, token: AdminTokenSource.Loaded,
        warnings: [String]
    ) async throws {
        let demoLines = demo ? try await DemoKeys.restore(in: store) : []
        let accessLog = try telemetry.accessLog(monitoring, logger: logger)

        var dataPlane = DataPlaneConfiguration(host: host, port: port)
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = []
        if let config {
            // Before the read, so that the reloader sees a change made during or after it.
            let loaded = RouteFileStamp(path: config)
            do {
                dataPlane.routes = LiveRoutes(try RouteFile.load(path: config))
            } catch {
                throw error.oneLine(file: config)
            }
            services.append(.init(service: RouteReloader(path: config, routes: dataPlane.routes, loaded: loaded, logger: logger)))
        }
        dataPlane.idleTimeout = .seconds(Int64(idleTimeout))
        dataPlane.monitoring = DataPlaneMonitoring(metricsFactory: telemetry.factory, accessLog: accessLog)
        let budget = DescriptorBudget(
            limit: DescriptorLimit.raiseToHardLimit(), dataPlane: maxConnections, controlPlane: adminMaxConnections)
        dataPlane.maxConnections = budget.dataPlane
        let (dataPlaneBound, bound) = AsyncStream<SocketAddress>.makeStream()
        let dataAddress = AddressBox()
        dataPlane.onListening = { address in
            dataAddress.set(address)
            bound.yield(address)
            bound.finish()
        }
        let server = DataPlaneServer(configuration: dataPlane, store: store, clock: SystemWallClock(), logger: logger)
        var adminConfiguration = AdminApplication.Configuration(
            host: adminHost, port: adminPort, idleTimeout: .seconds(adminIdleTimeout ?? min(10, idleTimeout)))
        adminConfiguration.maxConnections = budget.controlPlane
        adminConfiguration.allowedHosts = AllowedHosts(adminAllowedHosts)
        adminConfiguration.metrics = MetricsEndpoint(registry: telemetry.registry, heldKeys: heldKeys)
        adminConfiguration.adminToken = token.token
        let announcement = Announcement(
            demoLines: demoLines, adminAPI: token.token != nil, notes: token.notes, warnings: warnings + budget.warnings)
        let admin = AdminApplication.make(
            configuration: adminConfiguration,
            store: store,
            logger: logger,
            onServerRunning: { channel in
                // Both listeners are up: the data plane bound before the control plane began.
                guard let data = dataAddress.value, let control = channel.localAddress else { return }
                announcement.print(data: data, control: control)
                logger.info("serving", metadata: ["data": "\(data)", "control": "\(control)"])
            }
        )
        // Before the data plane, so that it stops after it and logs its last requests.
        let accessLogService: [ServiceGroupConfiguration.ServiceConfiguration] = accessLog.map { [.init(service: $0)] } ?? []
        let group = ServiceGroup(
            configuration: .init(
                services: [.init(service: store)] + accessLogService + [
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
