import Logging
import NIOCore
import Synchronization

/// One long-lived connection of a ``RESPClient`` and the loop that keeps it alive.
///
/// The slot is pinned to one event loop and reconnects there after every close, with
/// capped exponential backoff. Readers on the hot path only take a short lock to fetch the
/// current connection; they never wait for a connect, which is why commands fail fast with
/// ``RESPError/Code/unavailable`` while the slot is down.
final class RESPPoolSlot: Sendable {
    private enum Phase {
        case idle
        case connecting
        case connected(RESPConnection)
        case waiting(Scheduled<Void>?)
        case shutdown
    }

    private struct State {
        var phase: Phase = .idle
        var attempt = 0
        var firstAttemptCallback: (@Sendable (RESPError?) -> Void)?
    }

    let eventLoop: any EventLoop
    let index: Int
    private let configuration: RESPConfiguration
    private let logger: Logger
    private let state = Mutex(State())
    /// Called after every successful connect; the flag tells whether it was a reconnect.
    private let onConnect: @Sendable (RESPConnection, _ isReconnect: Bool) -> Void
    private let pubSubHandler: (@Sendable (RESPValue) -> Void)?

    init(
        index: Int,
        configuration: RESPConfiguration,
        eventLoop: any EventLoop,
        logger: Logger,
        pubSubHandler: (@Sendable (RESPValue) -> Void)? = nil,
        onConnect: @escaping @Sendable (RESPConnection, _ isReconnect: Bool) -> Void = { _, _ in }
    ) {
        self.index = index
        self.configuration = configuration
        self.eventLoop = eventLoop
        var logger = logger
        logger[metadataKey: "redis.slot"] = "\(index)"
        self.logger = logger
        self.onConnect = onConnect
        self.pubSubHandler = pubSubHandler
    }

    /// The connection if one is up; `nil` while (re)connecting.
    var connection: RESPConnection? {
        self.state.withLock { state in
            if case .connected(let c) = state.phase { return c }
            return nil
        }
    }

    /// Starts connecting; `firstAttempt` learns how the first attempt went (nil = success).
    func start(firstAttempt: @escaping @Sendable (RESPError?) -> Void) {
        let start = self.state.withLock { state -> Bool in
            guard case .idle = state.phase else { return false }
            state.phase = .connecting
            state.firstAttemptCallback = firstAttempt
            return true
        }
        if start { self.connect(isReconnect: false) } else { firstAttempt(RESPError(.shutdown, "slot already started or shut down")) }
    }

    private func connect(isReconnect: Bool) {
        RESPConnection.connect(
            configuration: self.configuration,
            eventLoop: self.eventLoop,
            logger: self.logger,
            pubSubHandler: self.pubSubHandler
        )
        .whenComplete { result in
            switch result {
            case .success(let connection):
                self.connected(connection, isReconnect: isReconnect)
            case .failure(let error):
                self.connectFailed(RESPConnection.asRESPError(error))
            }
        }
    }

    private func connected(_ connection: RESPConnection, isReconnect: Bool) {
        let (accepted, callback) = self.state.withLock { state -> (Bool, (@Sendable (RESPError?) -> Void)?) in
            if case .shutdown = state.phase { return (false, nil) }
            state.phase = .connected(connection)
            state.attempt = 0
            defer { state.firstAttemptCallback = nil }
            return (true, state.firstAttemptCallback)
        }
        guard accepted else {
            connection.closeNow(error: RESPError(.shutdown, "client shut down"))
            return
        }
        if isReconnect { self.logger.info("redis reconnected") }
        callback?(nil)
        connection.closeFuture.whenComplete { _ in self.connectionClosed(connection) }
        connection.whenStalled { self.connectionStalled(connection) }
        self.onConnect(connection, isReconnect)
    }

    /// A command on the current connection timed out: the slot connects anew (a new
    /// connection succeeds at once if only the old one is lost, and when Redis answers again
    /// if Redis itself is stalled), and the old connection stays open for the late replies,
    /// closing once they are in.
    private func connectionStalled(_ connection: RESPConnection) {
        let replace = self.state.withLock { state -> Bool in
            guard case .connected(let current) = state.phase, current === connection else { return false }
            state.phase = .connecting
            return true
        }
        guard replace else { return }
        connection.closeWhenAnswered()
        self.connect(isReconnect: true)
    }

    private func connectFailed(_ error: RESPError) {
        let (delay, callback) = self.state.withLock { state -> (TimeAmount?, (@Sendable (RESPError?) -> Void)?) in
            if case .shutdown = state.phase { return (nil, nil) }
            let delay = self.configuration.backoff(attempt: state.attempt)
            state.attempt += 1
            state.phase = .waiting(nil)
            defer { state.firstAttemptCallback = nil }
            return (delay, state.firstAttemptCallback)
        }
        callback?(error)
        guard let delay else { return }
        self.logger.warning(
            "redis connect failed; retrying",
            metadata: ["error": "\(error)", "retry_in_ms": "\(delay.nanoseconds / 1_000_000)"]
        )
        self.scheduleReconnect(after: delay)
    }

    private func connectionClosed(_ connection: RESPConnection) {
        let delay = self.state.withLock { state -> TimeAmount? in
            guard case .connected(let current) = state.phase, current === connection else { return nil }
            state.phase = .waiting(nil)
            return self.configuration.backoff(attempt: 0)
        }
        guard let delay else { return }
        self.logger.warning("redis connection lost; reconnecting", metadata: ["retry_in_ms": "\(delay.nanoseconds / 1_000_000)"])
        self.scheduleReconnect(after: delay)
    }

    private func scheduleReconnect(after delay: TimeAmount) {
        let scheduled = self.eventLoop.scheduleTask(in: delay) {
            let go = self.state.withLock { state -> Bool in
                guard case .waiting = state.phase else { return false }
                state.phase = .connecting
                return true
            }
            if go { self.connect(isReconnect: true) }
        }
        self.state.withLock { state in
            if case .waiting = state.phase { state.phase = .waiting(scheduled) }
        }
    }

    /// Stops reconnecting and closes the connection, failing its queue with `.shutdown`.
    func shutdown() -> EventLoopFuture<Void> {
        let phase = self.state.withLock { state -> Phase in
            let old = state.phase
            state.phase = .shutdown
            return old
        }
        switch phase {
        case .connected(let connection):
            connection.closeNow(error: RESPError(.shutdown, "client shut down"))
            return connection.closeFuture
        case .waiting(let scheduled):
            scheduled?.cancel()
            return self.eventLoop.makeSucceededVoidFuture()
        case .idle, .connecting, .shutdown:
            return self.eventLoop.makeSucceededVoidFuture()
        }
    }
}
