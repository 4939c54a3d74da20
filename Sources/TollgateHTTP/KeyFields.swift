import NIOCore

/// The header fields that carry an API key: one table for the decision (which secret a
/// request presents) and for forwarding (which fields never reach an upstream), so that the
/// two can never disagree about where a key may be.
///
/// The contract's order: `Authorization: Bearer KEY`, then `X-API-Key: KEY`, then
/// `token: KEY` (the old service's); the first found in that order wins, whatever order the
/// fields came in. Only a bearer `Authorization` is a key (decided by the first such field);
/// another scheme is the upstream's business.
enum KeyFields {
    /// Whether `value` (a span of `head`) is a bearer credential: `Bearer` in any case, then
    /// a space.
    static func isBearer(_ head: MessageHead, _ value: Range<Int>) -> Bool {
        head.hasPrefix(value, "bearer ")
    }

    /// The span of the secret `head` presents, if any (trailing spaces dropped).
    static func secret(in head: MessageHead) -> Range<Int>? {
        if let authorization = head.first("authorization") {
            let value = head.trimmed(authorization.value)
            if isBearer(head, value) {
                // `Bearer`, one space, then the token (further spaces are dropped).
                var start = value.lowerBound + 7
                while start < value.upperBound, head.bytes.getInteger(at: head.bytes.readerIndex + start, as: UInt8.self) == 0x20 {
                    start += 1
                }
                if start < value.upperBound { return start..<value.upperBound }
            }
        }
        for name in [KeyField.apiKey, .token] {
            if let field = head.fields.first(where: { name.matches(head, $0) }) {
                let value = head.trimmed(field.value)
                if !value.isEmpty { return value }
            }
        }
        return nil
    }

    /// Whether `field` carries a key and is never forwarded: `X-API-Key` and `token`
    /// always (a bearer `Authorization` is decided by the forwarding itself, with the first
    /// `Authorization` field).
    static func isKeyField(_ head: MessageHead, _ field: MessageHead.Field) -> Bool {
        KeyField.apiKey.matches(head, field) || KeyField.token.matches(head, field)
    }

    private enum KeyField {
        case apiKey, token

        func matches(_ head: MessageHead, _ field: MessageHead.Field) -> Bool {
            switch self {
            case .apiKey: head.name(of: field, is: "x-api-key")
            case .token: head.name(of: field, is: "token")
            }
        }
    }
}
