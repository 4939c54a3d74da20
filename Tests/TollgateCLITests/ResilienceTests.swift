import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import Testing
import TollgateTestSupport

/// The running binary under abuse: clients that never read, descriptor exhaustion, idle
/// admin connections, the database file pulled away.
@Suite struct ResilienceTests {
    let directory: URL

    init() throws {
        directory = try TestPaths.temporaryDirectory()
    }

    /// One connection pipelining requests without reading its answers must not grow the
    /// server's memory beyond a small bound, and other clients keep their latency.
    @Test func aClientThatNeverReadsCannotGrowTheServer() async throws {
        try await LoadLock.exclusively {
            let server = try await ServerProcess(arguments: ["--store", "memory:"], directory: directory)
            let before = server.residentBytes
            let client = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .channelOption(.autoRead, value: false)
                .connect(host: "127.0.0.1", port: server.port).get()
            // 40 MB of requests (1.2 million): unbounded, their answers would take ~230 MB.
            let chunk = ByteBuffer(string: String(repeating: "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", count: 30_000))
            for _ in 0..<40 { client.write(chunk, promise: nil) }
            client.flush()
            // While that connection is stuck, another client is served promptly. (The first
            // requests may wait while the server answers what fits in the kernel's socket
            // buffers, as it would for any client; after that the stuck connection costs nothing.)
            var latencies: [Duration] = []
            for _ in 0..<20 {
                let start = ContinuousClock.now
                #expect(try await httpRequest(port: server.port, .GET, "/healthz").status == 200)
                latencies.append(ContinuousClock.now - start)
                try await Task.sleep(for: .milliseconds(100))
            }
            let grown = server.residentBytes - before
            #expect(grown < 48 * 1024 * 1024, "the server grew by \(grown / 1024 / 1024) MiB")
            let sorted = latencies.sorted()
            #expect(sorted[sorted.count * 3 / 4] < .milliseconds(100), "another client's latencies: \(sorted)")
            try await client.close()
            await server.stop()
        }
    }

    /// Out of file descriptors, the accept loop must back off rather than spin a core,
    /// and the gateway serves again once connections close.
    @Test(arguments: ["--max-connections=1000", nil])
    func runningOutOfDescriptorsDoesNotSpin(cap: String?) async throws {
        try await LoadLock.exclusively {
            let server = try await ServerProcess(
                arguments: ["--store", "memory:"] + (cap.map { [$0] } ?? []),
                directory: directory,
                shellPrefix: "ulimit -n 64"
            )
            var clients: [any Channel] = []
            for _ in 0..<100 {
                if let channel = try? await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                    .connect(host: "127.0.0.1", port: server.port).get()
                {
                    clients.append(channel)
                }
            }
            try await Task.sleep(for: .milliseconds(300))
            let cpuBefore = server.cpuSeconds
            try await Task.sleep(for: .seconds(2))
            let spent = server.cpuSeconds - cpuBefore
            #expect(spent < 0.5, "the server used \(spent) s of CPU in 2 s while out of descriptors")
            for client in clients { try? await client.close() }
            let deadline = ContinuousClock.now + .seconds(10)
            var status = 0
            while status != 200 && ContinuousClock.now < deadline {
                status = (try? await httpRequest(port: server.port, .GET, "/healthz").status) ?? 0
                if status != 200 { try await Task.sleep(for: .milliseconds(100)) }
            }
            #expect(status == 200, "served again once connections closed")
            await server.stop()
        }
    }

    /// The control plane closes connections that send nothing, as the data plane does.
    @Test func theControlPlaneClosesIdleConnections() async throws {
        let server = try await ServerProcess(arguments: ["--store", "memory:", "--idle-timeout", "1"], directory: directory)
        let start = ContinuousClock.now
        let answer = try await rawExchange(port: server.adminPort, "", timeout: .seconds(15))
        #expect(answer.isEmpty)
        #expect(ContinuousClock.now - start < .seconds(5), "closed by the server after its idle timeout")
        await server.stop()
    }

    /// The database deleted under a running server: both listeners say not ready, the
    /// data plane serves nothing, and the log says why.
    @Test func aDeletedDatabaseTurnsBothListenersUnready() async throws {
        let path = directory.appendingPathComponent("gone.sqlite").path
        let created = try await tollgate(["keys", "create", "--key", "gone-key", "--scope", "*", "--store", "sqlite:" + path])
        #expect(created.status == 0, "\(created.stderr)")
        let server = try await ServerProcess(arguments: ["--store", "sqlite:" + path], directory: directory)
        #expect(try await httpRequest(port: server.port, .GET, "/api1", headers: [("token", "gone-key")]).status == 200)
        #expect(try await httpRequest(port: server.adminPort, .GET, "/readyz").status == 200)
        try FileManager.default.removeItem(atPath: path)
        let deadline = ContinuousClock.now + .seconds(3)
        var ready = 200
        while ready == 200 && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(50))
            ready = try await httpRequest(port: server.adminPort, .GET, "/readyz").status
        }
        #expect(ready == 503)
        #expect(try await httpRequest(port: server.port, .GET, "/readyz").status == 503)
        #expect(try await httpRequest(port: server.port, .GET, "/api1", headers: [("token", "gone-key")]).status == 503)
        await server.stop()
        #expect(server.stderr.contains("deleted or replaced"))
    }
}
