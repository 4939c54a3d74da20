/// A point in UTC time with millisecond precision.
///
/// Quota windows are aligned to UTC calendar boundaries, so the domain works in wall-clock
/// time rather than a monotonic `Clock`; tests inject a ``ManualWallClock`` to cross
/// boundaries without sleeping.
public struct Timestamp: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// Milliseconds since 1970-01-01T00:00:00Z.
    public var millisecondsSinceEpoch: Int64

    public init(millisecondsSinceEpoch: Int64) {
        self.millisecondsSinceEpoch = millisecondsSinceEpoch
    }

    /// The earliest instant Tollgate reads or writes, `0000-01-01T00:00:00Z`: RFC 3339 has
    /// four-digit years.
    public static let earliest = Timestamp(millisecondsSinceEpoch: CivilDate(year: 0, month: 1, day: 1).daysSinceEpoch * 86_400_000)

    /// The latest instant Tollgate reads or writes, `9999-12-31T23:59:59.999Z`. Spans and
    /// times beyond it are refused when parsed, so that no later arithmetic can overflow.
    public static let latest = Timestamp(
        millisecondsSinceEpoch: CivilDate(year: 10_000, month: 1, day: 1).daysSinceEpoch * 86_400_000 - 1)

    public init(secondsSinceEpoch: Int64) {
        self.millisecondsSinceEpoch = secondsSinceEpoch * 1000
    }

    /// Whole seconds since the epoch, rounded down (also for times before 1970).
    public var secondsSinceEpoch: Int64 {
        floorDivide(millisecondsSinceEpoch, 1000)
    }

    public static func < (lhs: Timestamp, rhs: Timestamp) -> Bool {
        lhs.millisecondsSinceEpoch < rhs.millisecondsSinceEpoch
    }

    public func adding(seconds: Int64) -> Timestamp {
        Timestamp(millisecondsSinceEpoch: millisecondsSinceEpoch + seconds * 1000)
    }

    /// RFC 3339 in UTC, e.g. `2026-11-29T08:00:00Z`; milliseconds appear only when non-zero.
    public var description: String { iso8601 }

    public var iso8601: String {
        let seconds = secondsSinceEpoch
        let millis = millisecondsSinceEpoch - seconds * 1000
        let days = floorDivide(seconds, 86_400)
        let secondOfDay = seconds - days * 86_400
        let date = CivilDate(daysSinceEpoch: days)
        var text =
            "\(pad(date.year, 4))-\(pad(date.month, 2))-\(pad(date.day, 2))"
            + "T\(pad(secondOfDay / 3600, 2)):\(pad(secondOfDay % 3600 / 60, 2)):\(pad(secondOfDay % 60, 2))"
        if millis != 0 { text += ".\(pad(millis, 3))" }
        return text + "Z"
    }
}

@inline(__always)
func floorDivide(_ a: Int64, _ b: Int64) -> Int64 {
    let q = a / b
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q
}

private func pad(_ value: Int64, _ width: Int) -> String {
    let digits = String(value)
    return digits.count >= width ? digits : String(repeating: "0", count: width - digits.count) + digits
}

/// Where the domain reads the current time from.
public protocol WallClock: Sendable {
    var now: Timestamp { get }
}

/// The system's real-time clock.
public struct SystemWallClock: WallClock {
    public init() {}

    public var now: Timestamp {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        return Timestamp(millisecondsSinceEpoch: Int64(spec.tv_sec) * 1000 + Int64(spec.tv_nsec) / 1_000_000)
    }
}

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

extension Timestamp {
    /// The IMF-fixdate form HTTP uses in `Date` (RFC 9110), e.g. `Sun, 29 Nov 2026 08:17:38 GMT`.
    public var httpDate: String {
        let seconds = secondsSinceEpoch
        let days = floorDivide(seconds, 86_400)
        let secondOfDay = seconds - days * 86_400
        let date = CivilDate(daysSinceEpoch: days)
        let weekdays = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"]  // 1970-01-01 was a Thursday
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        let weekday = weekdays[Int(days - floorDivide(days, 7) * 7)]
        return "\(weekday), \(pad(date.day, 2)) \(months[Int(date.month - 1)]) \(pad(date.year, 4)) "
            + "\(pad(secondOfDay / 3600, 2)):\(pad(secondOfDay % 3600 / 60, 2)):\(pad(secondOfDay % 60, 2)) GMT"
    }
}
