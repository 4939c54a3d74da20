import NIOCore
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// Caps the connections a listener holds: at the cap it stops accepting (the kernel's
/// backlog holds new clients, as nginx's `worker_connections` does) and accepts again as
/// soon as one closes. Without it, a flood of connections spends every file descriptor,
/// and then the store, the logs and the control plane fail with them.
///
/// Out of descriptors all the same (`EMFILE`, `ENFILE`: a cap set too high, or descriptors
/// spent elsewhere), NIO retries the failed accept at once, forever, spinning a core. So
/// the limiter keeps one descriptor in reserve: on that error it frees it, lets one accept
/// succeed and closes that connection at once, which stops the retries, then holds the
/// listener until a connection closes.
final class ConnectionLimiter: ChannelDuplexHandler, @unchecked Sendable {
    typealias InboundIn = any Channel
    typealias InboundOut = any Channel
    typealias OutboundIn = Never

    let maximum: Int
    /// Open connections; children close on their own event loops.
    private let open = Atomic<Int>(0)
    /// Lowered to the open count when descriptors ran out; back to `maximum` when one closes.
    private let effectiveMaximum: Atomic<Int>
    // Touched on the server channel's event loop only.
    private var readPending = false
    private var serverContext: ChannelHandlerContext?
    private var reserve: Int32 = -1
    private var shedding = false

    init(maximum: Int) {
        self.maximum = maximum
        self.effectiveMaximum = Atomic(maximum)
    }

    func handlerAdded(context: ChannelHandlerContext) {
        serverContext = context
        reserve = SystemOpen.open("/dev/null", O_RDONLY | O_CLOEXEC)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        serverContext = nil
        if reserve >= 0 { SystemOpen.close(reserve) }
        reserve = -1
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let child = unwrapInboundIn(data)
        if shedding {
            // The connection accepted only to stop NIO retrying a failed accept.
            shedding = false
            child.close(promise: nil)
            reserve = SystemOpen.open("/dev/null", O_RDONLY | O_CLOEXEC)
            return
        }
        open.add(1, ordering: .relaxed)
        let serverLoop = context.eventLoop
        child.closeFuture.whenComplete { _ in
            self.open.subtract(1, ordering: .relaxed)
            serverLoop.execute { self.connectionClosed() }
        }
        context.fireChannelRead(data)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let error = error as? IOError, error.errnoCode == EMFILE || error.errnoCode == ENFILE {
            effectiveMaximum.store(max(1, open.load(ordering: .relaxed)), ordering: .relaxed)
            if reserve >= 0 {
                SystemOpen.close(reserve)
                reserve = -1
                shedding = true
            }
            return
        }
        context.fireErrorCaught(error)
    }

    func read(context: ChannelHandlerContext) {
        if !shedding && open.load(ordering: .relaxed) >= effectiveMaximum.load(ordering: .relaxed) {
            readPending = true
        } else {
            context.read()
        }
    }

    private func connectionClosed() {
        effectiveMaximum.store(maximum, ordering: .relaxed)
        guard readPending, let context = serverContext, open.load(ordering: .relaxed) < maximum else { return }
        readPending = false
        context.read()
    }
}

/// `open(2)` and `close(2)`, named apart from the handler's own `open` and `close`.
private enum SystemOpen {
    static func close(_ descriptor: Int32) {
        #if canImport(Glibc)
            _ = Glibc.close(descriptor)
        #elseif canImport(Musl)
            _ = Musl.close(descriptor)
        #else
            _ = Darwin.close(descriptor)
        #endif
    }

    static func open(_ path: String, _ flags: Int32) -> Int32 {
        #if canImport(Glibc)
            Glibc.open(path, flags)
        #elseif canImport(Musl)
            Musl.open(path, flags)
        #else
            Darwin.open(path, flags)
        #endif
    }
}
