import NIOCore
import ServiceLifecycle
import Synchronization

/// What `serve` prints once both listeners are up: nothing says the server is up before it
/// is, and a start-up that fails prints its one error line alone.
struct Announcement: Sendable {
    var demoLines: [String]
    var adminAPI: Bool
    /// Lines for stdout (a token file just made).
    var notes: [String]
    /// Lines for stderr, each printed `tollgate: warning: …`.
    var warnings: [String]

    func print(data: SocketAddress, control: SocketAddress) {
        let host = data.ipAddress ?? "127.0.0.1"
        let port = data.port ?? 0
        let adminURL = "http://\(urlHost(control.ipAddress ?? "127.0.0.1")):\(control.port ?? 0)"
        var warnings = self.warnings
        if !control.isLoopback {
            warnings.append(
                "the control plane listens on \(control.ipAddress ?? "?"), not a loopback address: /metrics and the admin API (its token too) travel as plain HTTP; keep it on a private network, behind a firewall or a TLS proxy"
            )
        }
        for line in demoLines { emit(line) }
        emit("Data plane: http://\(urlHost(host)):\(port)")
        emit("Control plane: \(adminURL)")
        if adminAPI {
            emit("Admin API: \(adminURL)/admin/v1 (Authorization: Bearer ADMIN_TOKEN)")
        } else {
            emit("Admin API: off (no admin token; --admin-token-file PATH or TOLLGATE_ADMIN_TOKEN turns it on)")
        }
        for note in notes { emit(note) }
        if !demoLines.isEmpty { DemoKeys.printTryLine(host: host, port: port) }
        for warning in warnings { printError("warning: \(warning)") }
        emit("Serving; Ctrl-C (SIGINT) or SIGTERM stops after in-flight requests.")
    }
}

extension SocketAddress {
    /// Whether this is a loopback address (127.0.0.0/8, ::1, or 127.x mapped into IPv6).
    var isLoopback: Bool {
        guard let ip = ipAddress else { return self.protocol == .unix }
        return ip.hasPrefix("127.") || ip == "::1" || ip.hasPrefix("::ffff:127.")
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
