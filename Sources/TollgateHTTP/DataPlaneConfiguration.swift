import NIOCore
import Synchronization
import TollgateCore

/// The route table in force, swapped whole on reload (`SIGHUP`) without touching a
/// connection: each request reads it once, so a request never sees half of two tables.
public final class LiveRoutes: Sendable {
    private let table: Mutex<RouteTable>

    public init(_ table: RouteTable = .builtIn) { self.table = Mutex(table) }

    public var current: RouteTable { table.withLock { $0 } }

    public func replace(with table: RouteTable) { self.table.withLock { $0 = table } }
}

/// How the data plane listens and what it protects itself against.
public struct DataPlaneConfiguration: Sendable {
    public var host: String = "127.0.0.1"
    public var port: Int = 3000
    /// The routes; without a route file, the old service's `api1`..`api3`.
    public var routes = LiveRoutes()
    /// How long a connection may wait between requests, or take to send a request's
    /// header fields, before it is closed (slow or silent clients hold a socket each).
    public var idleTimeout: TimeAmount = .seconds(60)
    /// The most bytes of header fields a request may carry; beyond it the answer is `431`
    /// and the connection closes. 16 KiB holds any real key with room to spare.
    public var maxHeaderBytes: Int = 16 * 1024
    /// The most connections held at once; at the cap new ones wait in the listen backlog.
    /// The executable sets it from the descriptor limit (see ``defaultMaxConnections(descriptorLimit:)``).
    public var maxConnections: Int = 10_000
    /// Unsent answer bytes beyond which a connection stops being read (backpressure),
    /// and below which it is read again.
    public var writeBufferWaterMark = ChannelOptions.Types.WriteBufferWaterMark(low: 16 * 1024, high: 64 * 1024)
    /// Metrics and the access log (neither by default).
    public var monitoring = DataPlaneMonitoring()
    /// Called once the listener is bound, with its address (useful with port `0`).
    public var onListening: (@Sendable (SocketAddress) -> Void)? = nil

    public init(host: String = "127.0.0.1", port: Int = 3000) {
        self.host = host
        self.port = port
    }
}

extension DataPlaneConfiguration {
    /// Three quarters of the descriptors a process may open, and at least 128 left over:
    /// the rest stay for the store, the control plane and logs, so the gateway degrades by
    /// queueing, not by failing.
    public static func defaultMaxConnections(descriptorLimit: Int) -> Int {
        max(16, min(descriptorLimit / 4 * 3, descriptorLimit - 128))
    }
}
