import NIOCore

/// A message published to a channel this client subscribed to.
public struct RESPPubSubMessage: Sendable, Hashable {
    /// The channel it was published on.
    public var channel: String
    /// The message body, binary safe.
    public var payload: ByteBuffer
    /// For pattern subscriptions, the pattern that matched.
    public var pattern: String?

    /// Parses `message` / `pmessage` arrays (RESP2) and pushes (RESP3).
    init?(_ value: RESPValue) {
        guard let parts = value.array, let kind = parts.first?.string else { return nil }
        switch kind {
        case "message", "smessage":
            guard parts.count == 3, let channel = parts[1].string, let payload = parts[2].bytes else { return nil }
            self.channel = channel
            self.payload = payload
            self.pattern = nil
        case "pmessage":
            guard parts.count == 4, let pattern = parts[1].string, let channel = parts[2].string, let payload = parts[3].bytes else {
                return nil
            }
            self.channel = channel
            self.payload = payload
            self.pattern = pattern
        default:
            return nil
        }
    }
}
