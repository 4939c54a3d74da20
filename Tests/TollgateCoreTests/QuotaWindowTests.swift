import Testing
import TollgateCore

@Suite struct QuotaWindowTests {
    func at(_ text: String) throws -> Timestamp {
        try Timestamp(parsing: text, now: Timestamp(secondsSinceEpoch: 0))
    }

    @Test func fixedWindowsAlignToUTC() throws {
        let instant = try at("2026-11-29T08:17:38.250Z")
        let second = QuotaWindow(
            start: try at("2026-11-29T08:17:38Z").secondsSinceEpoch, end: try at("2026-11-29T08:17:39Z").secondsSinceEpoch)
        let minuteStart = try at("2026-11-29T08:17:00Z").secondsSinceEpoch
        let hourEnd = try at("2026-11-29T09:00:00Z").secondsSinceEpoch
        let day = QuotaWindow(start: try at("2026-11-29").secondsSinceEpoch, end: try at("2026-11-30").secondsSinceEpoch)
        #expect(QuotaPeriod.second.window(containing: instant) == second)
        #expect(QuotaPeriod.minute.window(containing: instant).start == minuteStart)
        #expect(QuotaPeriod.hour.window(containing: instant).end == hourEnd)
        #expect(QuotaPeriod.day.window(containing: instant) == day)
        #expect(QuotaPeriod.total.window(containing: instant) == QuotaWindow(start: 0, end: nil))
    }

    @Test func theLastMillisecondBelongsToTheOldWindowAndTheNextToTheNew() throws {
        let end = try at("2026-12-01T00:00:00Z")
        let last = Timestamp(millisecondsSinceEpoch: end.millisecondsSinceEpoch - 1)
        #expect(QuotaPeriod.month.window(containing: last).end == end.secondsSinceEpoch)
        #expect(QuotaPeriod.month.window(containing: end).start == end.secondsSinceEpoch)
        #expect(QuotaPeriod.day.window(containing: last).secondsUntilReset(from: last) == 1)
        #expect(QuotaPeriod.minute.window(containing: end).secondsUntilReset(from: end) == 60)
    }

    @Test(arguments: [
        ("2026-01-15", 31), ("2026-02-15", 28), ("2028-02-15", 29), ("2000-02-15", 29), ("2100-02-15", 28),
        ("2026-04-30", 30), ("2026-12-31", 31),
    ])
    func monthWindowsHaveTheMonthsLength(day: String, days: Int64) throws {
        let window = QuotaPeriod.month.window(containing: try at(day + "T12:00:00Z"))
        #expect(window.length == days * 86_400)
        #expect(Timestamp(secondsSinceEpoch: window.start).iso8601.hasSuffix("-01T00:00:00Z"))
    }

    @Test func decemberRollsIntoJanuary() throws {
        let window = QuotaPeriod.month.window(containing: try at("2026-12-31T23:59:59Z"))
        #expect(Timestamp(secondsSinceEpoch: window.end!).iso8601 == "2027-01-01T00:00:00Z")
    }

    @Test func civilDatesRoundTripAcrossCenturies() {
        for days in stride(from: Int64(-800_000), through: 800_000, by: 997) {
            let date = CivilDate(daysSinceEpoch: days)
            #expect(date.daysSinceEpoch == days)
        }
        #expect(CivilDate(daysSinceEpoch: 0) == CivilDate(year: 1970, month: 1, day: 1))
        #expect(CivilDate(year: 2024, month: 2, day: 29).firstOfNextMonth == CivilDate(year: 2024, month: 3, day: 1))
    }

    @Test func timestampsBeforeTheEpochRoundDown() {
        let instant = Timestamp(millisecondsSinceEpoch: -1)
        #expect(instant.secondsSinceEpoch == -1)
        #expect(instant.iso8601 == "1969-12-31T23:59:59.999Z")
    }

    @Test func httpDatesAreIMFFixdate() throws {
        #expect(Timestamp(secondsSinceEpoch: 0).httpDate == "Thu, 01 Jan 1970 00:00:00 GMT")
        #expect(try at("2026-11-29T08:29:20.900Z").httpDate == "Sun, 29 Nov 2026 08:29:20 GMT")
        #expect(try at("2028-02-29T23:59:59Z").httpDate == "Tue, 29 Feb 2028 23:59:59 GMT")
    }
}
