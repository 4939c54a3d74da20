import Foundation
import NIOCore
import NIOHTTP1
import Testing
import TollgateTestSupport

/// `serve` as an attacker on the same machine meets it: a connection flood on the admin
/// port, files other users can read, a token given two ways, a rebinding page.
@Suite struct OperatorHardeningTests {
    let cli: CLIStore
    var directory: URL { cli.directory }

    init() throws {
        cli = try CLIStore()
    }

    /// A raw request on its own connection, within `seconds`: the whole answer, or "" when
    /// none came in time.
    func request(_ port: Int, _ path: String, headers: String = "", seconds: Int64 = 5) async throws -> String {
        try await rawExchange(
            port: port, "GET \(path) HTTP/1.1\r\nHost: localhost\r\n\(headers)Connection: close\r\n\r\n", timeout: .seconds(seconds))
    }

    /// With few descriptors, idle connections on the admin port once took every one: the
    /// data plane and both health checks timed out. The control plane has a cap of its own,
    /// and at it closes the connection idle longest.
    @Test func aFloodOnTheAdminPortLeavesTheDataPlaneAndHealthChecksServing() async throws {
        try await LoadLock.exclusively {
            let server = try await ServerProcess(
                arguments: ["--store", "memory:", "--demo"], directory: directory, shellPrefix: "ulimit -n 256")
            let flood = IdleConnections(port: server.adminPort, count: 300)
            #expect(flood.descriptors.count == 300)
            try await Task.sleep(for: .milliseconds(500))
            let admitted = try await request(server.port, "/api1", headers: "token: demo1000\r\n")
            #expect(admitted.hasPrefix("HTTP/1.1 200"), "the data plane answers: \(admitted.prefix(200))")
            #expect(try await request(server.port, "/readyz").hasPrefix("HTTP/1.1 200"))
            let health = try await request(server.adminPort, "/healthz")
            #expect(health.hasPrefix("HTTP/1.1 200"), "the admin listener answers: \(health.prefix(200))")
            // The flood goes on being accepted, each past the cap closing the oldest idle one.
            let deadline = ContinuousClock.now + .seconds(10)
            while flood.closedByServer < 300 - 65 && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(100)) }
            #expect(flood.closedByServer >= 300 - 65, "at most the cap (and one) stay open")
            #expect(await server.stop() == 0)
        }
    }

    /// Digests (unsalted SHA-256) and the admin token are for their owner only.
    @Test func theStoreAndTheTokenFileAreMadeForTheirOwnerOnly() async throws {
        let token = directory.appendingPathComponent("admin.token").path
        let server = try await ServerProcess(arguments: ["--store", cli.store, "--admin-token-file", token], directory: directory)
        #expect(server.stdout.contains("Admin token: a new one is in \(token) (mode 0600)"), "\(server.stdout)")
        for path in [cli.databasePath, cli.databasePath + "-wal", cli.databasePath + "-shm", token] {
            let mode = try #require(try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int)
            #expect(mode == 0o600, "\(path) is \(String(mode, radix: 8))")
        }
        let written = try String(contentsOfFile: token, encoding: .utf8).trimmingCharacters(in: .newlines)
        #expect(written.count == 64)
        let listed = try await httpRequest(
            port: server.adminPort, .GET, "/admin/v1/keys", headers: [("Authorization", "Bearer \(written)")])
        #expect(listed.status == 200)
        #expect(await server.stop() == 0)
        #expect(!server.stdout.contains(written) && !server.stderr.contains(written), "the token is never printed")

        // A file others can read is used, with a warning as ssh gives.
        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: token)
        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: cli.databasePath)
        let open = try await ServerProcess(arguments: ["--store", cli.store, "--admin-token-file", token], directory: directory)
        #expect(open.stderr.contains("tollgate: warning: the admin token file"), "\(open.stderr)")
        #expect(open.stderr.contains("chmod 600 \(token)"))
        #expect(open.stderr.contains("chmod 600 \(cli.databasePath)"), "\(open.stderr)")
        #expect(await open.stop() == 0)
    }

    /// One source for the token: the environment and a flag at once is an error naming
    /// both, not a precedence to remember.
    @Test(arguments: [["--admin-token", "flag-token-0123456789"], ["--admin-token-file", "FILE"]])
    func theTokenGivenTwoWaysIsRefused(flag: [String]) async throws {
        let file = directory.appendingPathComponent("token").path
        try "file-token-0123456789\n".write(toFile: file, atomically: true, encoding: .utf8)
        let arguments = flag.map { $0 == "FILE" ? file : $0 }
        let result = try await tollgate(
            ["serve", "--store", "memory:", "--port", "0", "--admin-port", "0"] + arguments,
            environment: ["TOLLGATE_ADMIN_TOKEN": "env-token-0123456789"])
        #expect(result.status == 1)
        #expect(result.stderr.contains("TOLLGATE_ADMIN_TOKEN") && result.stderr.contains(flag[0]), "\(result.stderr)")
        #expect(result.stderr.split(separator: "\n").count == 1, "\(result.stderr)")
        #expect(!result.stdout.contains("Data plane"), "nothing was served")
    }

    /// A control plane on a public address is said to be plain HTTP; on loopback, nothing.
    @Test func aControlPlaneOffLoopbackIsWarnedAbout() async throws {
        let open = try await ServerProcess(arguments: ["--store", "memory:", "--admin-host", "0.0.0.0"], directory: directory)
        #expect(open.stderr.contains("tollgate: warning: the control plane listens on 0.0.0.0, not a loopback address"), "\(open.stderr)")
        #expect(await open.stop() == 0)
        let local = try await ServerProcess(arguments: ["--store", "memory:"], directory: directory)
        #expect(!local.stderr.contains("warning:"), "\(local.stderr)")
        #expect(local.stdout.contains("Admin API: off (no admin token; --admin-token-file PATH"), "\(local.stdout)")
        #expect(await local.stop() == 0)
    }

    /// A page on a rebinding name reaches 127.0.0.1 with its own name in Host: refused.
    @Test func onlyHostsThatNameTheListenerAreAnswered() async throws {
        let server = try await ServerProcess(
            arguments: ["--store", "memory:", "--admin-allowed-host", "admin.example"], directory: directory)
        let metrics = "GET /metrics HTTP/1.1\r\nHost: %@\r\nConnection: close\r\n\r\n"
        for host in ["attacker.example", "attacker.example:\(server.adminPort)", "localhost.attacker.example"] {
            let answer = try await rawExchange(port: server.adminPort, metrics.replacingOccurrences(of: "%@", with: host))
            #expect(answer.hasPrefix("HTTP/1.1 421"), "\(host): \(answer.prefix(100))")
            #expect(answer.contains("host_not_allowed"))
        }
        for host in ["localhost:\(server.adminPort)", "127.0.0.1:\(server.adminPort)", "[::1]:\(server.adminPort)", "ADMIN.example"] {
            let answer = try await rawExchange(port: server.adminPort, metrics.replacingOccurrences(of: "%@", with: host))
            #expect(answer.hasPrefix("HTTP/1.1 200"), "\(host): \(answer.prefix(100))")
        }
        #expect(await server.stop() == 0)
    }

    // MARK: Small things

    @Test func startUpAndChecksReadWell() async throws {
        let demo = try await ServerProcess(arguments: ["--store", "memory:", "--demo"], directory: directory)
        #expect(demo.stdout.contains("quota in total"), "\(demo.stdout)")
        #expect(!demo.stdout.contains("per total"))
        #expect(await demo.stop() == 0)

        let file = directory.appendingPathComponent("one.yaml").path
        try "routes:\n  - name: ping\n    answer:\n      body: pong\n".write(toFile: file, atomically: true, encoding: .utf8)
        let check = try await tollgate(["routes", "check", file])
        #expect(check.status == 0)
        #expect(check.stdout.contains("1 route, valid"), "\(check.stdout)")
    }

    /// Following the README in the repository's folder leaves nothing to commit by mistake.
    @Test func filesTheREADMEMakesAreIgnoredByGit() async throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        guard FileManager.default.fileExists(atPath: root.appendingPathComponent(".git").path) else {
            Issue.record("not a git checkout: \(root.path)")
            return
        }
        let made = [
            "admin.token", "tollgate.yaml", "tollgate.sqlite", "tollgate.sqlite-wal", "usage.csv", "dump.rdb", "appendonlydir/x.aof",
        ]
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["git", "-C", root.path, "check-ignore", "--no-index"] + made + ["docs/examples/tollgate.yaml"]
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        process.waitUntilExit()
        let ignored = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self).split(separator: "\n").map(
            String.init)
        #expect(Set(ignored) == Set(made), "not ignored: \(Set(made).subtracting(ignored).sorted())")
        #expect(!ignored.contains("docs/examples/tollgate.yaml"))
    }
}
