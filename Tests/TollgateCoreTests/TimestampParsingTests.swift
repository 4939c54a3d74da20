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

    @Test(arguments: [
        "", "soon", "30x", "2030-13-01", "2027-02-29", "2030-01-01T25:00:00Z", "2030-01-01T12:00:00", "2030-1-1",
        // Offsets are hours 00-23 and minutes 00-59 (RFC 3339).
        "2030-01-01T12:00:00+99:99", "2030-01-01T12:00:00+24:00", "2030-01-01T12:00:00-00:60", "2030-01-01T12:00:00.Z",
    ])
    func refusesWithTheAcceptedForms(text: String) {
        #expect {
            try Timestamp(parsing: text, now: now)
        } throws: { error in
            (error as! TollgateError).message.contains("'30d'")
        }
    }

    /// Spans and times past the year 9999 (or whose arithmetic would overflow) are one error
    /// that names the accepted range, never a trap.
    @Test(arguments: [
        "9223372036854775s", "9223372036854775807s", "106751991167d", "15250284452w", "153722867280912930m", "2562047788015215h",
        "9223372036854775807w", "3000000d", "9999-12-31T23:59:59-00:01",
    ])
    func refusesWhatIsOutOfRange(text: String) {
        #expect {
            try Timestamp(parsing: text, now: now)
        } throws: { error in
            let message = (error as! TollgateError).message
            return message.contains("out of range") && message.contains("9999-12-31")
        }
    }

    @Test func acceptsTheEndOfTheRange() throws {
        #expect(try Timestamp(parsing: "9999-12-31T23:59:59Z", now: now).iso8601 == "9999-12-31T23:59:59Z")
        #expect(try Timestamp(parsing: "9999-12-31T23:59:59.999+00:00", now: now) == Timestamp.latest)
        #expect(try Timestamp(parsing: "2030-01-01T12:00:00+23:59", now: now).iso8601 == "2029-12-31T12:01:00Z")
    }
}
