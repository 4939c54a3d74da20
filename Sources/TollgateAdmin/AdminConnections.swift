import Hummingbird
import HummingbirdCore
import NIOCore
import NIOHTTPTypes
import Synchronization

/// The control plane's connections, held to a small cap of their own.
///
/// Without one, a flood of idle connections on the admin port takes every descriptor the
/// process may open, and the data plane (its own cap notwithstanding), the store and the
/// health checks fail with it. A connection accepted past the cap makes the connection
/// that has been idle longest (no request in progress) close, as nginx reuses idle
/// keep-alive connections: a flood of silent connections then cannot lock operators and
/// health checks out either. So at most `maximum` connections stay open, and one more for
/// the moment it takes to close the idle one; when every connection has a request in
/// progress, new ones wait in the listen backlog.
final class AdminConnections: Sendable {
    let maximum: Int
    private let state = Mutex(State())

    private struct State {
        var open = 0
        /// Connections closed to make room and not yet counted as closed: they are not
        /// counted against the cap again. (Taken off at the next close, whichever
        /// connection it is: at worst one connection too many is closed, never too few.)
        var evicting = 0
        /// Tracked connections by id, with the time each last became idle (`nil`: busy).
        var connections: [ObjectIdentifier: Tracked] = [:]
        var clock: UInt64 = 0
    }

    private struct Tracked {
        var channel: any Channel
        var idleSince: UInt64?
        var requests = 0
    }

    init(maximum: Int) {
        self.maximum = max(1, maximum)
    }

    // MARK: The listener (its event loop)

    /// A connection was accepted. One past the cap, the connection idle longest is closed
    /// to make room: the new one has not sent its request yet, so it is never the one.
    func opened() {
        let victim = state.withLock { state in
            state.open += 1
            return takeOldestIdle(&state, over: maximum, sparing: nil)
        }
        victim?.close(promise: nil)
    }

    /// The connection idle longest, taken off the books, when more than `limit` are open.
    private func takeOldestIdle(_ state: inout State, over limit: Int, sparing spared: ObjectIdentifier?) -> (any Channel)? {
        guard state.open - state.evicting > limit else { return nil }
        let idle = state.connections.compactMap { id, tracked in id == spared ? nil : tracked.idleSince.map { (tracked.channel, $0) } }
        guard let (oldest, _) = idle.min(by: { $0.1 < $1.1 }) else { return nil }
        state.connections[ObjectIdentifier(oldest)] = nil
        state.evicting += 1
        return oldest
    }

    func closed() {
        state.withLock { state in
            state.open -= 1
            state.evicting = max(0, state.evicting - 1)
        }
    }

    /// Whether to accept another connection now: one past the cap (which makes an idle one
    /// close) is accepted, none while every connection has a request in progress.
    func isAccepting() -> Bool { state.withLock { $0.open - $0.evicting <= maximum } }

    // MARK: Each connection (its own event loop)

    /// A connection's pipeline is set up. Several accepted at once may all have been past
    /// the cap before any was tracked: each then makes room as it is.
    fileprivate func track(_ channel: any Channel) {
        let victim = state.withLock { state in
            state.clock += 1
            state.connections[ObjectIdentifier(channel)] = Tracked(channel: channel, idleSince: state.clock)
            return takeOldestIdle(&state, over: maximum, sparing: ObjectIdentifier(channel))
        }
        victim?.close(promise: nil)
    }

    fileprivate func requestBegan(_ channel: any Channel) {
        state.withLock { state in
            state.connections[ObjectIdentifier(channel)]?.requests += 1
            state.connections[ObjectIdentifier(channel)]?.idleSince = nil
        }
    }

    fileprivate func answerEnded(_ channel: any Channel) {
        state.withLock { state in
            state.clock += 1
            let now = state.clock
            guard var tracked = state.connections[ObjectIdentifier(channel)] else { return }
            tracked.requests = max(0, tracked.requests - 1)
            if tracked.requests == 0 { tracked.idleSince = now }
            state.connections[ObjectIdentifier(channel)] = tracked
        }
    }

    fileprivate func forget(_ channel: any Channel) {
        _ = state.withLock { $0.connections.removeValue(forKey: ObjectIdentifier(channel)) }
    }

    // MARK: Hummingbird's hooks

    /// For `ApplicationConfiguration.availableConnectionsDelegate`.
    var delegate: some AvailableConnectionsDelegate { Delegate(connections: self) }

    /// A handler for each connection's pipeline, after the HTTP codec.
    func tracker() -> any RemovableChannelHandler { Tracker(connections: self) }

    private struct Delegate: AvailableConnectionsDelegate {
        let connections: AdminConnections
        mutating func connectionOpened() { connections.opened() }
        mutating func connectionClosed() { connections.closed() }
        func isAcceptingNewConnections() -> Bool { connections.isAccepting() }
    }

    /// Marks its connection busy from a request's head to its answer's end, idle otherwise.
    private final class Tracker: ChannelDuplexHandler, RemovableChannelHandler {
        typealias InboundIn = HTTPRequestPart
        typealias InboundOut = HTTPRequestPart
        typealias OutboundIn = HTTPResponsePart
        typealias OutboundOut = HTTPResponsePart

        let connections: AdminConnections

        init(connections: AdminConnections) { self.connections = connections }

        func handlerAdded(context: ChannelHandlerContext) { connections.track(context.channel) }
        func handlerRemoved(context: ChannelHandlerContext) { connections.forget(context.channel) }

        func channelInactive(context: ChannelHandlerContext) {
            connections.forget(context.channel)
            context.fireChannelInactive()
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            if case .head = unwrapInboundIn(data) { connections.requestBegan(context.channel) }
            context.fireChannelRead(data)
        }

        func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
            if case .end = unwrapOutboundIn(data) { connections.answerEnded(context.channel) }
            context.write(data, promise: promise)
        }
    }
}
