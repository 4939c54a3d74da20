import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import Testing
import TollgateTestSupport

#if canImport(Glibc)
    import Glibc
#endif

/// docs/examples/nginx-forward-auth.conf, run by a real nginx in front of a live upstream,
/// asking a live Tollgate about each request.
@Suite struct ForwardAuthTests {
    static let nginxPath = ["/usr/sbin/nginx", "/usr/bin/nginx"].first { FileManager.default.isExecutableFile(atPath: $0) }

    static var nginxAvailable: Bool {
        if nginxPath == nil { print("nginx is not installed: the forward-auth tests through nginx skip (CI installs nginx-light)") }
        return nginxPath != nil
    }

    @Test(.enabled(if: ForwardAuthTests.nginxAvailable))
    func nginxAuthRequestAllowsRefusesAndCounts() async throws {
        let directory = try TestPaths.temporaryDirectory()
        let store = "sqlite:" + directory.appendingPathComponent("auth.sqlite").path
        let narrow = try await tollgate(["keys", "create", "--json", "--store", store, "--scope", "status", "--key", "narrow-key"])
        #expect(narrow.status == 0, "\(narrow.stderr)")
        let limited = try await tollgate(["keys", "create", "--json", "--store", store, "--scope", "*", "--limit", "orders*:2/day"])
        let limitedObject = try #require(try limited.json() as? [String: Any])
        let limitedKey = try #require(limitedObject["key"] as? String)
        let limitedID = try #require(limitedObject["id"] as? String)

        let upstream = try await UpstreamServer.start()
        let routes = directory.appendingPathComponent("tollgate.yaml")
        let example = try String(contentsOf: repositoryRoot.appendingPathComponent("docs/examples/tollgate.yaml"), encoding: .utf8)
        try Data(example.replacingOccurrences(of: "127.0.0.1:8080", with: "127.0.0.1:\(upstream.port)").utf8).write(to: routes)
        let server = try await ServerProcess(arguments: ["--store", store, "--config", routes.path], directory: directory)
        let nginx = try await Nginx(directory: directory, tollgatePort: server.port, upstreamPort: upstream.port)
        defer { nginx.stop() }

        // Allowed: the API answers, told the key's id and never given the key.
        let allowed = try await httpRequest(port: nginx.port, .GET, "/v1/orders/7?q=1", headers: [("X-API-Key", limitedKey)])
        #expect(allowed.status == 200, "\(allowed.body)")
        #expect(allowed.body.hasPrefix("GET /v1/orders/7?q=1\n"), "nginx forwards the original request: \(allowed.body)")
        #expect(allowed.body.contains("x-tollgate-key-id: \(limitedID)\n"))
        #expect(!allowed.body.contains(limitedKey))
        #expect(allowed.header("ratelimit")?.contains("r=1") == true, "\(allowed.headers)")

        // Refused: no key 401, another API's key 403, a spent quota 429.
        #expect(try await httpRequest(port: nginx.port, .GET, "/v1/orders/1").status == 401)
        #expect(try await httpRequest(port: nginx.port, .GET, "/v1/orders/1", headers: [("token", "narrow-key")]).status == 403)
        #expect(try await httpRequest(port: nginx.port, .POST, "/v1/orders/2", headers: [("token", limitedKey)]).status == 200)
        let spent = try await httpRequest(port: nginx.port, .GET, "/v1/orders/3", headers: [("token", limitedKey)])
        #expect(spent.status == 429)
        #expect(spent.body.contains("quota_exceeded"))
        #expect(spent.header("retry-after") != nil)
        #expect(upstream.requests == 2, "refused requests never reach the API")

        // Counted, as a routed request would be, under the route's name (refusals reach the
        // file within a second; admissions before their answer).
        var orders: [String: Any] = [:]
        let counted = try await eventually {
            let usage = try await tollgate(["usage", limitedID, "--json", "--store", store]).json() as? [String: Any]
            orders = (usage?["apis"] as? [String: Any])?["orders"] as? [String: Any] ?? [:]
            return (orders["denied_by_reason"] as? [String: Any])?["quota_exceeded"] as? Int == 1
        }
        #expect(counted, "\(orders)")
        #expect(orders["admitted"] as? Int == 2)

        nginx.stop()
        await server.stop()
        await upstream.stop()
    }

    /// Traefik and Envoy send the original request differently; both decide the same way.
    @Test func traefikAndEnvoyStyleRequestsAreDecidedAsRouted() async throws {
        let directory = try TestPaths.temporaryDirectory()
        let routes = directory.appendingPathComponent("tollgate.yaml")
        try Data(try String(contentsOf: repositoryRoot.appendingPathComponent("docs/examples/tollgate.yaml"), encoding: .utf8).utf8).write(
            to: routes)
        let server = try await ServerProcess(arguments: ["--store", "memory:", "--demo", "--config", routes.path], directory: directory)
        let traefik = try await httpRequest(
            port: server.port, .GET, "/auth",
            headers: [("X-Forwarded-Uri", "/v1/orders/9"), ("X-Forwarded-Method", "DELETE"), ("token", "demo5")]
        )
        #expect(traefik.status == 200 && traefik.header("x-tollgate-key-id") != nil)
        #expect(traefik.header("ratelimit") == "\"total\";r=4")
        let envoy = try await httpRequest(port: server.port, .POST, "/auth/v1/orders/9?x=1", headers: [("token", "demo5")])
        #expect(envoy.status == 200 && envoy.header("ratelimit") == "\"total\";r=3")
        let wrongMethod = try await httpRequest(port: server.port, .PATCH, "/auth/v1/orders/9", headers: [("token", "demo5")])
        #expect(wrongMethod.status == 405)
        let unknown = try await httpRequest(
            port: server.port, .GET, "/auth", headers: [("X-Original-URI", "/nowhere"), ("token", "demo5")])
        #expect(unknown.status == 404 && unknown.problemCode == "unknown_route")
        #expect(try await httpRequest(port: server.port, .GET, "/auth/status").status == 401)
        await server.stop()
    }
}

/// nginx on a free port with the example site, its files in a test directory.
final class Nginx: Sendable {
    let port: Int
    let process: Process

    init(directory: URL, tollgatePort: Int, upstreamPort: Int) async throws {
        port = try freePort()
        var site = try String(contentsOf: repositoryRoot.appendingPathComponent("docs/examples/nginx-forward-auth.conf"), encoding: .utf8)
        site = site.replacingOccurrences(of: "127.0.0.1:3000", with: "127.0.0.1:\(tollgatePort)")
            .replacingOccurrences(of: "127.0.0.1:8080", with: "127.0.0.1:\(upstreamPort)")
            .replacingOccurrences(of: "127.0.0.1:8000", with: "127.0.0.1:\(port)")
        let path = directory.path
        try Data(site.utf8).write(to: directory.appendingPathComponent("site.conf"))
        let main = """
            \(getuid() == 0 ? "user root;" : "")
            daemon off;
            pid \(path)/nginx.pid;
            error_log \(path)/nginx-error.log;
            events { worker_connections 256; }
            http {
                access_log off;
                client_body_temp_path \(path)/body;
                proxy_temp_path \(path)/proxy;
                fastcgi_temp_path \(path)/fastcgi;
                uwsgi_temp_path \(path)/uwsgi;
                scgi_temp_path \(path)/scgi;
                include \(path)/site.conf;
            }
            """
        try Data(main.utf8).write(to: directory.appendingPathComponent("nginx.conf"))
        let process = Process()
        process.executableURL = URL(fileURLWithPath: ForwardAuthTests.nginxPath ?? "nginx")
        process.arguments = ["-p", path, "-e", "\(path)/nginx-error.log", "-c", "\(path)/nginx.conf"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        self.process = process
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            if (try? await httpRequest(port: port, .GET, "/_probe")) != nil { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        stop()
        let log = (try? String(contentsOfFile: "\(path)/nginx-error.log", encoding: .utf8)) ?? ""
        throw NginxError.didNotStart(log)
    }

    func stop() {
        if process.isRunning { kill(process.processIdentifier, SIGQUIT) }
    }
}

enum NginxError: Error {
    case didNotStart(String)
}

/// A port nothing listens on now (bound, read, released).
func freePort() throws -> Int {
    let channel = try ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton).bind(host: "127.0.0.1", port: 0).wait()
    let port = channel.localAddress?.port ?? 0
    try channel.close().wait()
    return port
}
