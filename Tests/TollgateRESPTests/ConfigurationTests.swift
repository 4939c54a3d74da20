import Logging
import NIOCore
import Testing

@testable import TollgateRESP

@Suite struct ConfigurationTests {
    @Test func parsesFullURL() throws {
        let c = try RESPConfiguration(url: "redis://alice:p%40ss@cache.local:6380/3?timeout=250&connect_timeout=900&pool=4&protocol=3")
        #expect(c.host == "cache.local")
        #expect(c.port == 6380)
        #expect(c.database == 3)
        #expect(c.username == "alice")
        #expect(c.password == "p@ss")
        #expect(c.commandTimeout == .milliseconds(250))
        #expect(c.connectTimeout == .milliseconds(900))
        #expect(c.poolSize == 4)
        #expect(c.protocolVersion == .resp3)
    }

    @Test func parsesMinimalAndPasswordOnlyURLs() throws {
        let a = try RESPConfiguration(url: "redis://localhost")
        #expect(a.host == "localhost" && a.port == 6379 && a.database == 0 && a.password == nil && a.username == nil)
        #expect(a.commandTimeout == .seconds(2), "the default that serve --store-timeout has")
        let b = try RESPConfiguration(url: "redis://:secret@10.0.0.1:7000/")
        #expect(b.password == "secret" && b.username == nil && b.port == 7000)
        let c = try RESPConfiguration(url: "redis://[::1]:6390/2")
        #expect(c.host == "::1" && c.port == 6390 && c.database == 2)
    }

    @Test func separatePasswordWins() throws {
        let c = try RESPConfiguration(url: "redis://bob:inurl@h", password: "fromenv")
        #expect(c.username == "bob" && c.password == "fromenv")
    }

    @Test(arguments: [
        ("http://h", "scheme"),
        ("rediss://h", "TLS"),
        ("redis://", "host"),
        ("redis://h:0", "port"),
        ("redis://h:99999", "port"),
        ("redis://h:abc", "port"),
        ("redis://h/x", "database"),
        ("redis://h/-1", "database"),
        ("redis://h?timeout=0", "timeout"),
        ("redis://h?pool=many", "pool"),
        ("redis://h?color=red", "color"),
        ("redis://h?timeout", "timeout"),
        ("redis://h?protocol=4", "protocol"),
        ("redis://[::1", "IPv6"),
    ])
    func namesWhatIsWrong(_ url: String, _ mentioned: String) {
        #expect {
            _ = try RESPConfiguration(url: url)
        } throws: { error in
            guard let e = error as? RESPError else { return false }
            return e.code == .invalidURL && e.message.contains(mentioned)
        }
    }

    @Test func passwordNeverAppearsInDescriptionsOrErrors() throws {
        let secret = "Sup3r/S3cret?:pw"
        var c = try RESPConfiguration(url: "redis://user@localhost:6379/1", password: secret)
        c.commandTimeout = .milliseconds(50)
        #expect(c.password == secret)
        #expect(!c.description.contains(secret))
        #expect(!c.debugDescription.contains(secret))
        #expect(!String(reflecting: c).contains(secret))
        var dumped = ""
        dump(c, to: &dumped)
        #expect(!dumped.contains(secret))
        struct Outer { var redis: RESPConfiguration }
        #expect(!"\(Outer(redis: c))".contains(secret))
        #expect(c.description.contains("***"))

        // Errors for URLs that carry the password (even unencoded special characters) never echo it.
        for url in [
            "redis://:\(secret)@h:bad", "redis://u:\(secret)@h/x", "redis://u:\(secret)@h?x=1",
            "redis://:%zz\(secret)@h", "redis://:\(secret)@",
        ] {
            do {
                _ = try RESPConfiguration(url: url)
            } catch {
                #expect(!error.description.contains(secret), "\(error)")
                #expect(!"\(error)".contains("S3cret"))
            }
        }
    }

    @Test func backoffGrowsAndIsCapped() {
        let c = RESPConfiguration(reconnectBackoffMin: .milliseconds(10), reconnectBackoffMax: .milliseconds(100))
        for attempt in 0..<40 {
            let d = c.backoff(attempt: attempt)
            #expect(d >= .milliseconds(10) && d <= .milliseconds(100))
        }
        #expect(c.backoff(attempt: 10) >= .milliseconds(80))
    }

    @Test func validation() {
        #expect(throws: RESPError.self) { try RESPConfiguration(poolSize: 0).validate() }
        #expect(throws: RESPError.self) { try RESPConfiguration(port: 70000).validate() }
        #expect(throws: Never.self) { try RESPConfiguration().validate() }
    }
}
