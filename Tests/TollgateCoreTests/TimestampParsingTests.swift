import Testing
import TollgateCore

@Suite struct TimestampParsingTests {
    let now = Timestamp(secondsSinceEpoch: 1_000_000)

    @Test(arguments: [("90s", 90), ("15m", 900), ("12h", 43_200), ("30d", 2_592_000), ("4w", 2_419_200)])
    func spansCountFromNow(text: String, seconds: Int64) throws {
        #expect(try Timestamp(parsing: text, now: now) == now.adding(seconds: seconds))
    }

    @Test(arguments: [
        ("2030-01-01", "2030-01-01T00:00:00Z"),
        ("2030-01-01T12:30:05Z", "2030-01-01T12:30:05Z"),
        ("2030-01-01T12:30:05.250Z", "2030-01-01T12:30:05.250Z"),
        ("2030-01-01T12:30:05+02:00", "2030-01-01T10:30:05Z"),
        ("2030-01-01T00:30:00-01:00", "2030-01-01T01:30:00Z"),
        ("2028-02-29T00:00:00Z", "2028-02-29T00:00:00Z"),
    ])
    func datesAndTimesAreUTC(text: String, expected: String) throws {
        #expect(try Timestamp(parsing: text, now: now).iso8601 == expected)
    }

    @Test(arguments: ["", "soon", "30x", "2030-13-01", "2027-02-29", "2030-01-01T25:00:00Z", "2030-01-01T12:00:00", "2030-1-1"])
    func refusesWithTheAcceptedForms(text: String) {
        #expect {
            try Timestamp(parsing: text, now: now)
        } throws: { error in
            (error as! TollgateError).message.contains("'30d'")
        }
    }
}
