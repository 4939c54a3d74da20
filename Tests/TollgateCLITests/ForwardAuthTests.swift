import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization
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

    static let caddyPath = ["/usr/bin/caddy", "/usr/local/bin/caddy"].first { FileManager.default.isExecutableFile(atPath: $0) }

    static var caddyAvailable: Bool {
        if caddyPath == nil { print("caddy is not installed: the forward-auth tests through Caddy skip (CI installs caddy)") }
        return caddyPath != nil
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

        // Refused: no key 401, another API's key 403 (the client's own copy of the Traefik
        // family's field naming the API it may reach changes nothing), a spent quota 429.
        #expect(try await httpRequest(port: nginx.port, .GET, "/v1/orders/1").status == 401)
        #expect(try await httpRequest(port: nginx.port, .GET, "/v1/orders/1", headers: [("token", "narrow-key")]).status == 403)
        let spoofed = try await httpRequest(
            port: nginx.port, .GET, "/v1/orders/1",
            headers: [("token", "narrow-key"), ("X-Forwarded-Uri", "/status"), ("X-Forwarded-Method", "GET")])
        #expect(spoofed.status == 403, "\(spoofed.body)")
        // Each refusal keeps its own status through nginx: a path no route serves is 404.
        let unknown = try await httpRequest(port: nginx.port, .GET, "/nowhere", headers: [("token", limitedKey)])
        #expect(unknown.status == 404 && unknown.problemCode == "unknown_route", "\(unknown.status) \(unknown.body)")
        let dotted = try await httpRequest(port: nginx.port, .GET, "/v1/orders/..;/x", headers: [("token", limitedKey)])
        #expect(dotted.status == 400, "\(dotted.status) \(dotted.body)")
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

    /// docs/examples/Caddyfile, run by a real Caddy (`forward_auth`, the Traefik family of
    /// fields) in front of a live upstream: a client's own `X-Original-URI` naming an API its
    /// key may reach changes nothing, on the per-proxy form; the generic form refuses it.
    @Test(.enabled(if: ForwardAuthTests.caddyAvailable))
    func caddyForwardAuthDecidesWhatTheClientAskedFor() async throws {
        let directory = try TestPaths.temporaryDirectory()
        let store = "sqlite:" + directory.appendingPathComponent("caddy.sqlite").path
        let narrow = try await tollgate(["keys", "create", "--json", "--store", store, "--scope", "api1", "--key", "narrow-key"])
        #expect(narrow.status == 0, "\(narrow.stderr)")
        let upstream = try await UpstreamServer.start()
        let server = try await ServerProcess(arguments: ["--store", store], directory: directory)
        let caddy = try await Caddy(directory: directory, tollgatePort: server.port, upstreamPort: upstream.port)
        defer { caddy.stop() }

        let allowed = try await httpRequest(
            port: caddy.port, .GET, "/api1?x=1", headers: [("token", "narrow-key"), ("X-Tollgate-Key-Id", "forged")])
        #expect(allowed.status == 200, "\(allowed.body)")
        #expect(allowed.body.hasPrefix("GET /api1?x=1\n"), "Caddy forwards the original request: \(allowed.body)")
        #expect(allowed.body.contains("x-tollgate-key-id: key_"), "\(allowed.body)")
        #expect(!allowed.body.contains("forged"), "the client's own key id never reaches the API")
        #expect(!allowed.body.contains("narrow-key"), "the key never reaches the API: \(allowed.body)")

        // The attack: a key scoped to api1 asks for api3, adding the nginx family's field
        // naming api1. Caddy sets X-Forwarded-Uri to /api3 and passes the client's field on.
        let refused = try await httpRequest(
            port: caddy.port, .GET, "/api3", headers: [("token", "narrow-key"), ("X-Original-URI", "/api1"), ("X-Original-Method", "GET")])
        #expect(refused.status == 403 && refused.problemCode == "scope_denied", "\(refused.status) \(refused.body)")
        #expect(refused.header("content-type") == "application/problem+json", "Caddy passes the refusal on as Tollgate wrote it")
        #expect(upstream.requests == 1, "refused requests never reach the API")

        // The generic form behind the same Caddy: the sources disagree, so the question is
        // refused, and counts nothing.
        await caddy.restart(uri: "/auth")
        let ambiguous = try await httpRequest(
            port: caddy.port, .GET, "/api3", headers: [("token", "narrow-key"), ("X-Original-URI", "/api1")])
        #expect(ambiguous.status == 400 && ambiguous.problemCode == "ambiguous_original_request", "\(ambiguous.status) \(ambiguous.body)")
        #expect(upstream.requests == 1)
        let narrowID = try #require((try narrow.json() as? [String: Any])?["id"] as? String)
        caddy.stop()
        await server.stop()
        let usage = try await tollgate(["usage", narrowID, "--json", "--store", store]).json() as? [String: Any]
        let apis = usage?["apis"] as? [String: Any] ?? [:]
        #expect((apis["api1"] as? [String: Any])?["admitted"] as? Int == 1, "\(apis)")
        #expect((apis["api3"] as? [String: Any])?["admitted"] as? Int ?? 0 == 0, "\(apis)")
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
            port: server.port, .GET, "/auth/traefik",
            headers: [("X-Forwarded-Uri", "/v1/orders/9"), ("X-Forwarded-Method", "DELETE"), ("token", "demo5")]
        )
        #expect(traefik.status == 200 && traefik.header("x-tollgate-key-id") != nil)
        #expect(traefik.header("ratelimit") == "\"total\";r=4")
        let envoy = try await httpRequest(port: server.port, .POST, "/auth/envoy/v1/orders/9?x=1", headers: [("token", "demo5")])
        #expect(envoy.status == 200 && envoy.header("ratelimit") == "\"total\";r=3")
        let wrongMethod = try await httpRequest(port: server.port, .PATCH, "/auth/envoy/v1/orders/9", headers: [("token", "demo5")])
        #expect(wrongMethod.status == 405)
        // The generic form still answers one source at a time.
        let generic = try await httpRequest(port: server.port, .POST, "/auth/v1/orders/9", headers: [("token", "demo5")])
        #expect(generic.status == 200 && generic.header("ratelimit") == "\"total\";r=2")
        let unknown = try await httpRequest(
            port: server.port, .GET, "/auth", headers: [("X-Original-URI", "/nowhere"), ("token", "demo5")])
        #expect(unknown.status == 404 && unknown.problemCode == "unknown_route")
        #expect(try await httpRequest(port: server.port, .GET, "/auth/status").status == 401)
        await server.stop()
    }
}

/// nginx on a free port with docs/examples/nginx.conf and the example site, its files in a
/// test directory (as the example says to run it, only the addresses changed).
final class Nginx: Sendable {
    let port: Int
    let process: Process

    init(directory: URL, tollgatePort: Int, upstreamPort: Int) async throws {
        port = try freePort()
        let examples = repositoryRoot.appendingPathComponent("docs/examples")
        var site = try String(contentsOf: examples.appendingPathComponent("nginx-forward-auth.conf"), encoding: .utf8)
        site = site.replacingOccurrences(of: "127.0.0.1:3000", with: "127.0.0.1:\(tollgatePort)")
            .replacingOccurrences(of: "127.0.0.1:8080", with: "127.0.0.1:\(upstreamPort)")
            .replacingOccurrences(of: "127.0.0.1:8000", with: "127.0.0.1:\(port)")
        let path = directory.path
        try Data(site.utf8).write(to: directory.appendingPathComponent("nginx-forward-auth.conf"))
        try FileManager.default.copyItem(
            at: examples.appendingPathComponent("nginx.conf"), to: directory.appendingPathComponent("nginx.conf"))
        let process = Process()
        process.executableURL = URL(fileURLWithPath: ForwardAuthTests.nginxPath ?? "nginx")
        // In the foreground; as root, workers stay root (they read the test's files).
        let globals = "daemon off;" + (getuid() == 0 ? " user root;" : "")
        process.arguments = ["-p", path, "-e", "nginx-error.log", "-c", "nginx.conf", "-g", globals]
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

/// Caddy on a free port with docs/examples/Caddyfile, only its addresses changed (and, for
/// ``restart(uri:)``, the forward-auth path).
final class Caddy: Sendable {
    let port: Int
    let directory: URL
    let tollgatePort: Int
    let upstreamPort: Int
    let process: Mutex<Process?>

    init(directory: URL, tollgatePort: Int, upstreamPort: Int) async throws {
        port = try freePort()
        self.directory = directory
        self.tollgatePort = tollgatePort
        self.upstreamPort = upstreamPort
        process = Mutex(nil)
        try await start(uri: nil)
    }

    private func start(uri: String?) async throws {
        var file = try String(contentsOf: repositoryRoot.appendingPathComponent("docs/examples/Caddyfile"), encoding: .utf8)
        file = file.replacingOccurrences(of: "127.0.0.1:3000", with: "127.0.0.1:\(tollgatePort)")
            .replacingOccurrences(of: "127.0.0.1:8080", with: "127.0.0.1:\(upstreamPort)")
            .replacingOccurrences(of: ":8000", with: ":\(port)")
        if let uri { file = file.replacingOccurrences(of: "uri /auth/caddy", with: "uri \(uri)") }
        let config = directory.appendingPathComponent("Caddyfile")
        try Data(file.utf8).write(to: config)
        let child = Process()
        child.executableURL = URL(fileURLWithPath: ForwardAuthTests.caddyPath ?? "caddy")
        child.arguments = ["run", "--config", config.path, "--adapter", "caddyfile"]
        child.environment = ["HOME": directory.path, "XDG_DATA_HOME": directory.path, "XDG_CONFIG_HOME": directory.path]
        let log = directory.appendingPathComponent("caddy.log")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        child.standardOutput = try FileHandle(forWritingTo: log)
        child.standardError = try FileHandle(forWritingTo: log)
        try child.run()
        process.withLock { $0 = child }
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            if (try? await rawExchange(port: port, "GET /_probe HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", timeout: .seconds(2)))?
                .hasPrefix("HTTP/1.1") == true
            {
                return
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        stop()
        throw NginxError.didNotStart((try? String(contentsOf: log, encoding: .utf8)) ?? "")
    }

    /// Stops Caddy and starts it again with forward-auth asking at `uri`.
    func restart(uri: String) async {
        stop()
        process.withLock { $0?.waitUntilExit() }
        try? await start(uri: uri)
    }

    func stop() {
        process.withLock { process in
            if let process, process.isRunning { kill(process.processIdentifier, SIGTERM) }
        }
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
