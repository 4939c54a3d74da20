/// The one error type this module throws or fails futures with.
///
/// A gateway has to make a fast decision on every failure (fail open, fail closed, retry
/// elsewhere), so errors carry a small, switchable ``Code`` instead of a zoo of types. The
/// ``message`` adds human detail for logs; it never contains a password or other secret,
/// because everything that builds one is written to leave secrets out.
public struct RESPError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What went wrong, coarse enough to switch on.
    public enum Code: String, Sendable, Hashable, CaseIterable {
        /// No reply arrived within the command timeout. The server may still run the command
        /// and answer later: the connection stays open for that late reply (see
        /// ``RESPConfiguration/lateReplyWindow``) but is sent nothing new.
        case timeout
        /// The TCP connect or the handshake did not finish within the connect timeout.
        case connectTimeout
        /// The TCP connection could not be established (refused, unreachable, ...).
        case connectionFailed
        /// The connection closed (or was closed) while the command was queued or in flight.
        case connectionClosed
        /// No connection is up right now; the pool is reconnecting in the background.
        /// Commands fail with this immediately instead of waiting, so callers never hang.
        case unavailable
        /// The client or connection was shut down on purpose.
        case shutdown
        /// The server sent bytes that are not valid RESP, or exceeded a decoder limit.
        case protocolError
        /// The server answered with an error reply (`-ERR ...`, `-WRONGTYPE ...`, ...).
        /// ``RESPError/message`` holds the server's text.
        case serverError
        /// AUTH was refused, or the server demands authentication we did not provide.
        case authenticationFailed
        /// A `redis://` URL could not be parsed; the message names the offending part.
        case invalidURL
        /// A configuration value is out of range.
        case invalidConfiguration
    }

    /// The switchable kind of the error.
    public var code: Code
    /// Human-readable detail; free of secrets.
    public var message: String

    /// Creates an error; `message` must not contain secrets.
    public init(_ code: Code, _ message: String = "") {
        self.code = code
        self.message = message
    }

    /// For server errors, the first word of the reply (`"ERR"`, `"NOSCRIPT"`, `"WRONGTYPE"`),
    /// which Redis defines as the machine-readable error kind; `nil` otherwise.
    public var serverErrorPrefix: Substring? {
        guard self.code == .serverError else { return nil }
        return self.message.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: false).first
    }

    public var description: String {
        self.message.isEmpty ? "RESPError.\(self.code.rawValue)" : "RESPError.\(self.code.rawValue): \(self.message)"
    }

    static func server(_ message: String) -> RESPError {
        // NOAUTH / WRONGPASS are authentication problems whatever command triggered them.
        if message.hasPrefix("NOAUTH") || message.hasPrefix("WRONGPASS") {
            return RESPError(.authenticationFailed, message)
        }
        return RESPError(.serverError, message)
    }
}
