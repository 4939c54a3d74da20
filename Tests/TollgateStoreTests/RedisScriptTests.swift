import Testing
import TollgateCore
import TollgateRESP
import TollgateTestSupport

@testable import TollgateRedis

/// The admission script computes windows on Redis's clock in Lua; they must be the very
/// windows Swift computes, calendar months and leap years included.
@Suite(.enabled(if: RedisServer.isAvailable, "redis-server is not installed: the Lua window tests are skipped"))
struct RedisScriptTests {
    static let instants: [Int64] = [
        0, 59, 60, 86_399, 86_400,
        951_782_399, 951_782_400, 951_868_800,  // 2000-02-28T23:59:59Z, 02-29, 03-01 (leap century)
        4_107_542_399, 4_107_542_400,  // 2100-02-28T23:59:59Z, 2100-03-01 (no leap day)
        1_796_083_199, 1_796_083_200,  // 2026-11-30T23:59:59Z, 2026-12-01
        1_798_761_599, 1_798_761_600,  // 2026-12-31T23:59:59Z, 2027-01-01
        1_709_164_800, 1_709_251_199,  // 2024-02-29, its last second
    ]

    @Test func luaWindowsAreSwiftsWindows() async throws {
        let url = try #require(await SharedRedis.url())
        let client = try RESPClient(configuration: try RESPConfiguration(url: url), logger: quietLogger)
        try await client.connect()
        let probe = RESPScript(
            RedisScripts.windowFunctions + "local s, e = window(ARGV[1], tonumber(ARGV[2]))\nreturn { s, e or -1 }"
        )
        for instant in Self.instants {
            for period in QuotaPeriod.allCases {
                let reply = try await client.executeScript(probe, args: [.string(period.rawValue), .string(String(instant))])
                let values = try #require(reply.array).map { Int64($0.int ?? -2) }
                let swift = period.window(containing: Timestamp(secondsSinceEpoch: instant))
                #expect(values == [swift.start, swift.end ?? -1], "\(period) at \(instant)")
            }
        }
        await client.close()
    }
}
