import NIOCore

/// Which RESP version a connection asks for in its handshake.
public enum RESPProtocolVersion: Int, Sendable, Hashable {
    /// Plain RESP2: every Redis-compatible server speaks it, and reply shapes (HGETALL as a
    /// flat array, ...) stay the ones most code was written against.
    case resp2 = 2
    /// RESP3 via `HELLO 3`: typed maps, sets, doubles, booleans and push messages. A server
    /// that refuses HELLO is used as RESP2 instead of failing the connection.
    case resp3 = 3
}

/// Everything needed to reach one Redis server.
///
/// The password is held here because every reconnect must authenticate again, but it is
/// kept out of `description`, `debugDescription`, reflection (`dump`) and every error and
/// log message this module produces, so a configuration can be logged safely.
public struct RESPConfiguration: Sendable {
    /// Host name or IP address of the server.
    public var host: String
    /// TCP port of the server.
    public var port: Int
    /// Database index sent with SELECT after every (re)connect when not 0.
    public var database: Int
    /// ACL user name; `nil` authenticates as the default user (password-only AUTH).
    public var username: String?
    /// Password for AUTH; `nil` sends no AUTH. Never printed.
    public var password: String?
    /// Bounds TCP connect plus handshake, so a server that accepts but never answers (a
    /// stopped process still has a listening socket) is detected at connect time too.
    public var connectTimeout: TimeAmount
    /// How long a command may wait for its reply; a silent server (stopped, or busy with a
    /// fork or a slow script) can only be detected this way. Two seconds by default: a
    /// timeout is a failure the caller answers (a gateway with `503`), so it must not fire
    /// merely because the machine is busy.
    public var commandTimeout: TimeAmount
    /// How long a connection whose command timed out is kept open for the late replies.
    /// Redis runs every command it has received even if its caller stopped waiting, so a
    /// caller may need the late reply to undo what the command did; meanwhile the pool sends
    /// the connection nothing new and connects anew. A connection still silent at the end
    /// of the window is closed (the server or the network is gone): replies it never got are
    /// lost.
    public var lateReplyWindow: TimeAmount
    /// Number of long-lived connections in a ``RESPClient``. Each one pipelines freely, so a
    /// few are plenty; more only help spread work over event loops.
    public var poolSize: Int
    /// First delay before reconnecting; doubled per failed attempt up to the maximum. Never
    /// zero, so a server that accepts and then drops connections cannot cause a busy loop.
    public var reconnectBackoffMin: TimeAmount
    /// Upper bound of the reconnect delay, i.e. the longest a recovered server waits to be used.
    public var reconnectBackoffMax: TimeAmount
    /// RESP2, or RESP3 via `HELLO 3` (with fallback).
    public var protocolVersion: RESPProtocolVersion
    /// Decoder bounds against hostile or broken replies.
    public var decoderLimits: RESPDecoderLimits

    /// Defaults suit a gateway next to a local Redis: 2 s command timeout, 30 s late-reply
    /// window, 1 s connect timeout, two connections, reconnect backoff 50 ms ... 2 s, RESP2.
    public init(
        host: String = "127.0.0.1",
        port: Int = 6379,
        database: Int = 0,
        username: String? = nil,
        password: String? = nil,
        connectTimeout: TimeAmount = .seconds(1),
        commandTimeout: TimeAmount = .seconds(2),
        lateReplyWindow: TimeAmount = .seconds(30),
        poolSize: Int = 2,
        reconnectBackoffMin: TimeAmount = .milliseconds(50),
        reconnectBackoffMax: TimeAmount = .seconds(2),
        protocolVersion: RESPProtocolVersion = .resp2,
        decoderLimits: RESPDecoderLimits = RESPDecoderLimits()
    ) {
        self.host = host
        self.port = port
        self.database = database
        self.username = username
        self.password = password
        self.connectTimeout = connectTimeout
        self.commandTimeout = commandTimeout
        self.lateReplyWindow = lateReplyWindow
        self.poolSize = poolSize
        self.reconnectBackoffMin = reconnectBackoffMin
        self.reconnectBackoffMax = reconnectBackoffMax
        self.protocolVersion = protocolVersion
        self.decoderLimits = decoderLimits
    }

    /// Checks ranges; called by the client and connection before use.
    public func validate() throws(RESPError) {
        func check(_ ok: Bool, _ what: String) throws(RESPError) {
            if !ok { throw RESPError(.invalidConfiguration, what) }
        }
        try check(!self.host.isEmpty, "host is empty")
        try check((1...65535).contains(self.port), "port \(self.port) out of range 1...65535")
        try check(self.database >= 0, "database must not be negative")
        try check(self.poolSize >= 1, "poolSize must be at least 1")
        try check(self.connectTimeout.nanoseconds > 0, "connectTimeout must be positive")
        try check(self.commandTimeout.nanoseconds > 0, "commandTimeout must be positive")
        try check(self.lateReplyWindow.nanoseconds > 0, "lateReplyWindow must be positive")
        try check(self.reconnectBackoffMin.nanoseconds > 0, "reconnectBackoffMin must be positive")
        try check(self.reconnectBackoffMax >= self.reconnectBackoffMin, "reconnectBackoffMax must be >= reconnectBackoffMin")
    }

    /// The delay before reconnect attempt `attempt` (0-based): exponential, capped, with
    /// ±20 % jitter so that many clients do not reconnect in lockstep.
    func backoff(attempt: Int) -> TimeAmount {
        let minNs = Double(self.reconnectBackoffMin.nanoseconds)
        let maxNs = Double(self.reconnectBackoffMax.nanoseconds)
        let exponential = minNs * Double(1 << Swift.min(attempt, 30))
        let capped = Swift.min(exponential, maxNs)
        let jittered = capped * Double.random(in: 0.8...1.2)
        return .nanoseconds(Int64(Swift.max(minNs, Swift.min(jittered, maxNs))))
    }
}

extension RESPConfiguration: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    /// Connection details with the password replaced by `***`.
    public var description: String {
        var s = "RESPConfiguration(redis://"
        if let username { s += username }
        if self.password != nil { s += ":***" }
        if self.username != nil || self.password != nil { s += "@" }
        s += "\(self.host):\(self.port)/\(self.database)"
        s += ", connectTimeout: \(Self.ms(self.connectTimeout)), commandTimeout: \(Self.ms(self.commandTimeout))"
        s += ", poolSize: \(self.poolSize), backoff: \(Self.ms(self.reconnectBackoffMin))...\(Self.ms(self.reconnectBackoffMax))"
        s += ", protocol: RESP\(self.protocolVersion.rawValue))"
        return s
    }

    public var debugDescription: String { self.description }

    /// Reflection (`dump`, default printing of structs that contain this one) shows the
    /// same redacted fields instead of the stored password.
    public var customMirror: Mirror {
        Mirror(
            self,
            children: [
                "host": self.host, "port": self.port, "database": self.database,
                "username": self.username as Any, "password": self.password == nil ? "nil" : "***",
                "connectTimeout": self.connectTimeout, "commandTimeout": self.commandTimeout,
                "poolSize": self.poolSize, "protocolVersion": self.protocolVersion,
            ],
            displayStyle: .struct
        )
    }

    static func ms(_ t: TimeAmount) -> String {
        "\(t.nanoseconds / 1_000_000)ms"
    }
}
