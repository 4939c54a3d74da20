import Foundation
import NIOHTTP1
import Testing
import TollgateCore
import TollgateHTTP
import TollgateRESP
import TollgateRedis
import TollgateSQLite

/// Every store a live gateway test runs on.
public enum GatewayStore: String, CaseIterable, CustomTestStringConvertible, Sendable {
    case memory, sqlite, redis
    public var testDescription: String { rawValue }

    /// Redis runs only where `redis-server` is installed (CI installs it), and says so otherwise.
    public static var allCases: [GatewayStore] {
        if RedisServer.isAvailable { return [.memory, .sqlite, .redis] }
        print("redis-server is not installed: the live data-plane tests skip the Redis store")
        return [.memory, .sqlite]
    }
}

/// Runs `body` against a live data plane on a free port, over a fresh store of `kind`.
public func withGateway<T: Sendable>(
    _ kind: GatewayStore,
    clock: some WallClock = SystemWallClock(),
    configure: (inout DataPlaneConfiguration) -> Void = { _ in },
    _ body: (Int, any KeyStore) async throws -> T
) async throws -> T {
    switch kind {
    case .memory:
        let store = MemoryKeyStore()
        return try await withDataPlane(store: store, clock: clock, configure: configure) { port in try await body(port, store) }
    case .sqlite:
        let path = try TestPaths.temporaryDirectory().appendingPathComponent("gateway.sqlite").path
        let store = try SQLiteKeyStore(configuration: .init(path: path))
        return try await withDataPlane(store: store, clock: clock, configure: configure) { port in try await body(port, store) }
    case .redis:
        let url = try #require(await SharedRedis.url(), "redis-server did not start")
        var configuration = RedisKeyStore.Configuration(redis: try RESPConfiguration(url: url))
        configuration.namespace = SharedRedis.uniqueNamespace()
        let store = try RedisKeyStore(configuration: configuration, logger: quietLogger)
        try await store.connect()
        return try await withDataPlane(store: store, clock: clock, configure: configure) { port in try await body(port, store) }
    }
}

/// A `GET` of `target` on the data plane at `port`, with `key` in the `header` field.
public func get(_ port: Int, _ target: String, key: String? = nil, header: String = "token") async throws -> TestResponse {
    try await httpRequest(port: port, .GET, target, headers: key.map { [(header, $0)] } ?? [])
}
