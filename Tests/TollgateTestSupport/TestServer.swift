import Logging
import NIOCore
import ServiceLifecycle
import Synchronization
import TollgateCore
import TollgateHTTP

/// A logger that writes nothing: tests never bootstrap logging.
public let quietLogger = Logger(label: "tollgate.test", factory: { _ in SwiftLogNoOpLogHandler() })

/// Runs a data plane on a free loopback port over `store`, with the store's own service,
/// for the duration of `body`, then shuts both down gracefully as `serve` would.
/// `services` run beside them (an access log), started after the store and before the
/// data plane, stopped in reverse, as `serve` orders them.
public func withDataPlane<Store: KeyStore, Clock: WallClock, T: Sendable>(
    store: Store,
    clock: Clock = SystemWallClock(),
    services: [any Service] = [],
    configure: (inout DataPlaneConfiguration) -> Void = { _ in },
    _ body: (Int) async throws -> T
) async throws -> T {
    var configuration = DataPlaneConfiguration(host: "127.0.0.1", port: 0)
    configure(&configuration)
    let (ports, continuation) = AsyncStream<Int>.makeStream()
    configuration.onListening = { address in
        continuation.yield(address.port ?? 0)
        continuation.finish()
    }
    let server = DataPlaneServer(configuration: configuration, store: store, clock: clock, logger: quietLogger)
    let group = ServiceGroup(services: [store] + services + [server], logger: quietLogger)
    return try await withThrowingTaskGroup(of: Void.self) { tasks in
        tasks.addTask { try await group.run() }
        guard let port = await ports.first(where: { _ in true }) else { throw TestHTTPError.noResponse }
        do {
            let result = try await body(port)
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
            return result
        } catch {
            await group.triggerGracefulShutdown()
            try? await tasks.waitForAll()
            throw error
        }
    }
}

/// A clock tests move by hand, to cross window boundaries without sleeping.
public final class ManualWallClock: WallClock {
    private let instant: Mutex<Timestamp>

    public init(_ start: Timestamp) { instant = Mutex(start) }

    public var now: Timestamp { instant.withLock { $0 } }

    public func set(_ instant: Timestamp) { self.instant.withLock { $0 = instant } }

    public func advance(seconds: Int64) { instant.withLock { $0 = $0.adding(seconds: seconds) } }
}

/// Makes a key in `store` and returns its secret.
@discardableResult
public func makeKey(
    in store: some KeyStore,
    scopes: [String] = ["*"],
    limits: [String] = [],
    secret: String? = nil,
    expiresAt: Timestamp? = nil,
    now: Timestamp = SystemWallClock().now
) async throws -> (key: APIKey, secret: String) {
    let draft = KeyDraft(
        name: "test",
        scopes: try scopes.map { try ScopePattern(parsing: $0) },
        limits: try limits.map { try LimitSpec(parsing: $0) },
        expiresAt: expiresAt
    )
    let issued = try KeyIssuer.issue(draft, secret: secret, now: now)
    try await store.createKey(issued.key)
    return issued
}
