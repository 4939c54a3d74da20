/// A quota a key holds: at most `quota` admitted requests per `period` on the paths that
/// `scope` matches (every path the key reaches when the scope is `*`).
///
/// Written as `N/PERIOD` or `PATTERN:N/PERIOD`, the same text on the CLI, in the admin API
/// and in listings, so that what an operator types is what they read back.
public struct LimitSpec: Sendable, Hashable, CustomStringConvertible {
    public var scope: ScopePattern
    public var quota: Int64
    public var period: QuotaPeriod

    public init(scope: ScopePattern = .all, quota: Int64, period: QuotaPeriod) {
        self.scope = scope
        self.quota = quota
        self.period = period
    }

    public init(parsing text: some StringProtocol) throws(TollgateError) {
        let spec = String(text)
        func bad(_ why: String) -> TollgateError {
            TollgateError(
                .invalidLimit,
                "limit \(TollgateError.quote(spec)) is not valid (\(why)): write N/PERIOD or PATTERN:N/PERIOD, e.g. '1000/day' or 'api1:10/minute', where PERIOD is one of \(QuotaPeriod.allCases.map(\.rawValue).joined(separator: ", "))"
            )
        }
        var rest = Substring(spec)
        var scope = ScopePattern.all
        if let colon = rest.lastIndex(of: ":") {
            do {
                scope = try ScopePattern(parsing: rest[..<colon])
            } catch {
                throw bad(error.message)
            }
            rest = rest[rest.index(after: colon)...]
        }
        guard let slash = rest.firstIndex(of: "/") else {
            // `api1:10/minute:extra`: the last ':' left a piece that is no quota at all.
            throw bad(rest.count < spec.count ? "\(TollgateError.quote(rest)) after the last ':' is not N/PERIOD" : "no '/PERIOD'")
        }
        let number = rest[..<slash]
        guard !number.isEmpty, number.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else {
            throw bad(
                number.first == "-"
                    ? "\(TollgateError.quote(number)) is negative: a quota is 0 or more"
                    : "\(TollgateError.quote(number)) is not a whole number")
        }
        guard let quota = Int64(number) else {
            throw bad("\(TollgateError.quote(number)) is too large: a quota is at most \(Int64.max)")
        }
        guard let period = QuotaPeriod(rawValue: String(rest[rest.index(after: slash)...]).lowercased()) else {
            throw bad("\(TollgateError.quote(rest[rest.index(after: slash)...])) is not a period")
        }
        self.init(scope: scope, quota: quota, period: period)
    }

    /// The canonical spec text; a key-wide limit is written without `*:`.
    public var description: String {
        scope == .all ? "\(quota)/\(period.rawValue)" : "\(scope):\(quota)/\(period.rawValue)"
    }

    /// Which usage counter this limit draws on: limits with the same scope and period
    /// count the same requests, so they share one counter, and changing a quota keeps the
    /// count already used.
    public var counterID: String {
        scope == .all ? period.rawValue : "\(scope):\(period.rawValue)"
    }

    /// The policy name in the RateLimit header fields: the period for key-wide limits
    /// (`"total"`), else the pattern and the period (`"api1-minute"`).
    public var policyName: String {
        scope == .all ? period.rawValue : "\(scope)-\(period.rawValue)"
    }
}

extension LimitSpec: SpecText {}
