/// How often a limit's count starts again: never, or at fixed UTC-aligned boundaries.
public enum QuotaPeriod: String, Sendable, Hashable, CaseIterable, Codable {
    case total, second, minute, hour, day, month

    /// The window that contains `instant`.
    public func window(containing instant: Timestamp) -> QuotaWindow {
        let seconds = instant.secondsSinceEpoch
        switch self {
        case .total:
            return QuotaWindow(start: 0, end: nil)
        case .second, .minute, .hour, .day:
            let length = fixedLength!
            let start = floorDivide(seconds, length) * length
            return QuotaWindow(start: start, end: start + length)
        case .month:
            let date = CivilDate(daysSinceEpoch: floorDivide(seconds, 86_400))
            let first = CivilDate(year: date.year, month: date.month, day: 1)
            return QuotaWindow(
                start: first.daysSinceEpoch * 86_400,
                end: first.firstOfNextMonth.daysSinceEpoch * 86_400
            )
        }
    }

    /// The window length in seconds for periods whose length never varies.
    public var fixedLength: Int64? {
        switch self {
        case .total, .month: nil
        case .second: 1
        case .minute: 60
        case .hour: 3600
        case .day: 86_400
        }
    }
}

/// One fixed window of a ``QuotaPeriod``, in whole seconds since the epoch.
public struct QuotaWindow: Sendable, Hashable {
    /// The first second of the window; `0` for the never-ending `total` window.
    public var start: Int64
    /// The first second after the window, or `nil` when it never resets.
    public var end: Int64?

    public init(start: Int64, end: Int64?) {
        self.start = start
        self.end = end
    }

    /// The window's length in seconds, or `nil` when it never resets.
    public var length: Int64? { end.map { $0 - start } }

    /// Whole seconds from `instant` until the window resets, rounded up so that a client
    /// that waits this long is never early; `nil` when it never resets.
    public func secondsUntilReset(from instant: Timestamp) -> Int64? {
        guard let end else { return nil }
        let remainingMillis = end * 1000 - instant.millisecondsSinceEpoch
        return max(0, (remainingMillis + 999) / 1000)
    }
}
