/// Turns an operator's request into a key record, checking it the same way for the CLI,
/// the admin API and imports.
public enum KeyIssuer {
    /// The most limits one key may hold (the ledger tracks a request's counters in a word).
    public static let maximumLimits = 64
    /// The most scope patterns one key may hold: listings print them all, and a request
    /// checks each in turn.
    public static let maximumScopes = 64
    /// The longest pattern, in a scope or a limit: a route's name and the path below it,
    /// with room to spare. Patterns are ASCII, so this counts characters too.
    public static let maximumPatternLength = 256
    public static let maximumSecretLength = 512

    /// Makes a key from `draft`, with `secret` if the operator chose one, else a new one.
    public static func issue(
        _ draft: KeyDraft,
        secret: String? = nil,
        id: KeyID = .generate(),
        now: Timestamp
    ) throws(TollgateError) -> (key: APIKey, secret: String) {
        let secret = secret ?? KeySecret.generate()
        try id.validate()
        try validate(secret: secret)
        try validate(draft, now: now)
        let key = APIKey(
            id: id,
            digest: KeyDigest(secret: secret),
            name: draft.name,
            scopes: draft.scopes,
            limits: draft.limits,
            createdAt: now,
            expiresAt: draft.expiresAt
        )
        return (key, secret)
    }

    public static func validate(_ draft: KeyDraft, now: Timestamp) throws(TollgateError) {
        if draft.limits.count > maximumLimits {
            throw TollgateError(.invalidLimit, "a key may hold at most \(maximumLimits) limits; this one has \(draft.limits.count)")
        }
        if draft.scopes.count > maximumScopes {
            throw TollgateError(.invalidScope, "a key may hold at most \(maximumScopes) scopes; this one has \(draft.scopes.count)")
        }
        if let long = draft.scopes.first(where: { $0.description.utf8.count > maximumPatternLength }) {
            throw TollgateError(
                .invalidScope,
                "scope pattern \(TollgateError.quote(long.description)) is longer than \(maximumPatternLength) characters: name the API, not the whole path"
            )
        }
        if let long = draft.limits.first(where: { $0.scope.description.utf8.count > maximumPatternLength }) {
            throw TollgateError(
                .invalidLimit,
                "limit \(TollgateError.quote(long.description)) has a pattern longer than \(maximumPatternLength) characters: name the API, not the whole path"
            )
        }
        if let expiry = draft.expiresAt, expiry <= now {
            throw TollgateError(.invalidTime, "the expiry \(expiry) is in the past: give a later time, e.g. '30d' or '2030-01-01'")
        }
        if draft.name.utf8.count > 200 {
            throw TollgateError(.invalidInput, "a key's name may be at most 200 bytes long")
        }
        // Names are printed in listings and logs: a control character could rewrite a terminal.
        // Printable ASCII, the usual name, is checked byte by byte; the rest scalar by scalar.
        let printableASCII = draft.name.utf8.allSatisfy { $0 >= 0x20 && $0 < 0x7F }
        if !printableASCII { try validate(nonASCIIName: draft.name) }
    }

    private static func validate(nonASCIIName name: String) throws(TollgateError) {
        if name.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) {
            throw TollgateError(
                .invalidInput,
                "the name \(TollgateError.quote(name)) holds a control character (a tab, newline or escape): use printable text")
        }
        // Invisible and direction-changing characters (U+202E, zero-width spaces) and line
        // separators make a name in a listing read as another, or as several lines.
        if let hidden = name.unicodeScalars.first(where: isHidden) {
            throw TollgateError(
                .invalidInput,
                "the name \(TollgateError.quote(name)) holds \(hidden.codePoint), an invisible, direction-changing or line-separating character that could make a listing mislead: use visible text"
            )
        }
    }

    /// A format character (Cf: bidirectional controls, zero-width characters, U+FEFF) or a
    /// line or paragraph separator (U+2028, U+2029).
    private static func isHidden(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.properties.generalCategory {
        case .format, .lineSeparator, .paragraphSeparator: true
        default: false
        }
    }

    /// An operator's secret must fit in a header and, if it claims the `tg_` format, be one.
    public static func validate(secret: String) throws(TollgateError) {
        if secret.isEmpty || secret.utf8.count > maximumSecretLength {
            throw TollgateError(.invalidInput, "a key must be 1 to \(maximumSecretLength) bytes long")
        }
        if secret.utf8.contains(where: { $0 <= 0x20 || $0 >= 0x7F || $0 == UInt8(ascii: ",") }) {
            throw TollgateError(
                .invalidInput, "a key may hold only visible ASCII characters other than ',' (no spaces): it travels in an HTTP header")
        }
        if secret.hasPrefix(KeySecret.marker) && !KeySecret.isPlausible(secret) {
            throw TollgateError(
                .invalidInput,
                "a key that starts with '\(KeySecret.marker)' must be one Tollgate generated (its checksum does not match): leave out --key to generate one, or choose a key without that prefix"
            )
        }
    }
}

extension Unicode.Scalar {
    /// `U+202E`: how messages name a character they cannot show.
    var codePoint: String {
        let hex = String(value, radix: 16, uppercase: true)
        return "U+" + String(repeating: "0", count: max(0, 4 - hex.count)) + hex
    }
}

extension Timestamp {
    /// Reads an expiry: an RFC 3339 time (`2030-01-01T00:00:00Z`, offsets allowed), a date
    /// (`2030-01-01`, midnight UTC), or a span from `now` (`90s`, `15m`, `12h`, `30d`, `4w`).
    public init(parsing text: String, now: Timestamp) throws(TollgateError) {
        // Made only when thrown: a million-key import reads a million times.
        var bad: TollgateError {
            TollgateError(
                .invalidTime,
                "\(TollgateError.quote(text)) is not a time: write a span such as '30d', '12h', '15m', '90s' or '4w', a date such as '2030-01-01', or an RFC 3339 time such as '2030-01-01T12:00:00Z'"
            )
        }
        var outOfRange: TollgateError {
            TollgateError(
                .invalidTime,
                "\(TollgateError.quote(text)) is out of range: a time must lie between \(Timestamp.earliest) and \(Timestamp.latest) (years 0000 to 9999)"
            )
        }
        let bytes = Array(text.utf8)
        if let unit = bytes.last, let count = Int64(String(text.dropLast())), count >= 0 {
            let seconds: Int64
            switch unit {
            case UInt8(ascii: "s"): seconds = 1
            case UInt8(ascii: "m"): seconds = 60
            case UInt8(ascii: "h"): seconds = 3600
            case UInt8(ascii: "d"): seconds = 86_400
            case UInt8(ascii: "w"): seconds = 604_800
            default: throw bad
            }
            let (total, overflow) = count.multipliedReportingOverflow(by: seconds * 1000)
            let (end, pastEnd) = now.millisecondsSinceEpoch.addingReportingOverflow(total)
            guard !overflow, !pastEnd, end <= Timestamp.latest.millisecondsSinceEpoch else { throw outOfRange }
            self = Timestamp(millisecondsSinceEpoch: end)
            return
        }
        func number(_ range: Range<Int>) throws(TollgateError) -> Int64 {
            guard range.upperBound <= bytes.count else { throw bad }
            var value: Int64 = 0
            for byte in bytes[range] {
                guard byte >= 0x30 && byte <= 0x39 else { throw bad }
                value = value * 10 + Int64(byte - 0x30)
            }
            return value
        }
        func expect(_ index: Int, _ characters: String) throws(TollgateError) {
            guard index < bytes.count, characters.utf8.contains(bytes[index]) else { throw bad }
        }
        try expect(4, "-")
        try expect(7, "-")
        let date = CivilDate(year: try number(0..<4), month: try number(5..<7), day: try number(8..<10))
        guard (1...12).contains(date.month), date.day >= 1,
            CivilDate(daysSinceEpoch: date.daysSinceEpoch) == date
        else { throw bad }
        var seconds = date.daysSinceEpoch * 86_400
        var millis: Int64 = 0
        if bytes.count > 10 {
            try expect(10, "Tt ")
            try expect(13, ":")
            try expect(16, ":")
            let hour = try number(11..<13)
            let minute = try number(14..<16)
            let second = try number(17..<19)
            guard hour < 24, minute < 60, second < 60 else { throw bad }
            seconds += hour * 3600 + minute * 60 + second
            var index = 19
            if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
                index += 1
                guard index < bytes.count, bytes[index] >= 0x30, bytes[index] <= 0x39 else { throw bad }
                var scale: Int64 = 100
                while index < bytes.count, bytes[index] >= 0x30, bytes[index] <= 0x39 {
                    millis += Int64(bytes[index] - 0x30) * scale
                    scale /= 10
                    index += 1
                }
            }
            guard index < bytes.count else { throw bad }
            if bytes[index] == UInt8(ascii: "Z") || bytes[index] == UInt8(ascii: "z") {
                guard index + 1 == bytes.count else { throw bad }
            } else {
                try expect(index, "+-")
                try expect(index + 3, ":")
                guard index + 6 == bytes.count else { throw bad }
                let offsetHours = try number((index + 1)..<(index + 3))
                let offsetMinutes = try number((index + 4)..<(index + 6))
                // RFC 3339: an offset is hours 00-23 and minutes 00-59.
                guard offsetHours < 24, offsetMinutes < 60 else { throw bad }
                let offset = offsetHours * 3600 + offsetMinutes * 60
                seconds -= bytes[index] == UInt8(ascii: "+") ? offset : -offset
            }
        }
        let instant = Timestamp(millisecondsSinceEpoch: seconds * 1000 + millis)
        guard instant >= Timestamp.earliest, instant <= Timestamp.latest else { throw outOfRange }
        self = instant
    }
}
