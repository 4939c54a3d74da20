import CoreMetrics
import Dispatch
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import Synchronization
import TollgateCore

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// The access log: one line per data-plane request, written by a thread of its own.
///
/// The event loop only appends a small record to a bounded queue under a short lock; the
/// log's thread renders and writes whole batches. A sink that does not keep up (a full
/// disk, a pipe nobody reads) never slows the data plane: once `capacity` lines wait,
/// further lines are dropped, counted in `tollgate_access_log_dropped_total`, and a
/// warning is logged once. Run it as a `Service` started before the data plane, so that it
/// stops after it and writes the last requests' lines.
public final class AccessLog: Service, Sendable {
    public enum Destination: Sendable, Hashable {
        case standardOutput
        /// Appended to; created if missing. A FIFO is fine: lines are dropped, and counted,
        /// while nobody reads it.
        case file(String)
    }

    public struct Configuration: Sendable {
        public var destination: Destination
        public var format: AccessLogFormat
        /// The most lines waiting to be written; beyond it lines are dropped.
        public var capacity: Int = 65_536
        /// How long, after graceful shutdown, the log may take to write what waits.
        public var shutdownGrace: Duration = .seconds(1)

        public init(destination: Destination, format: AccessLogFormat = .text) {
            self.destination = destination
            self.format = format
        }
    }

    private struct Queue {
        var pending: [AccessLogRecord] = []
        var writerSleeping = false
        var stopping = false
        var dropped = 0
    }

    public let configuration: Configuration
    private let queue = Mutex(Queue())
    private let wake = DispatchSemaphore(value: 0)
    private let dropped: Counter?
    private let written: Counter?
    private let logger: Logger
    /// The descriptor opened at start-up (so that a wrong path fails at once), or -1 for a
    /// FIFO nobody reads yet, opened later by the log's thread.
    private let openedDescriptor: Int32

    /// Opens the destination now, so that a path that cannot be written is an error at
    /// start-up rather than silence later.
    public init(configuration: Configuration, metricsFactory: (any MetricsFactory)? = nil, logger: Logger) throws(TollgateError) {
        self.configuration = configuration
        self.logger = logger
        dropped = metricsFactory.map { Counter(label: "tollgate_access_log_dropped_total", dimensions: [], factory: $0) }
        written = metricsFactory.map { Counter(label: "tollgate_access_log_lines_total", dimensions: [], factory: $0) }
        // A reader that goes away must not kill the server: write then fails with EPIPE.
        signal(SIGPIPE, SIG_IGN)
        switch configuration.destination {
        case .standardOutput:
            openedDescriptor = STDOUT_FILENO
        case .file(let path):
            let descriptor = Self.openDestination(path)
            if descriptor < 0 && errno != ENXIO {
                let reason = String(cString: strerror(errno))
                throw TollgateError(
                    .invalidInput,
                    "cannot open the access log at '\(path)': \(reason); check that its folder exists and is writable, or give --access-log - for standard output"
                )
            }
            openedDescriptor = descriptor
        }
    }

    private static func openDestination(_ path: String) -> Int32 {
        // Non-blocking: opening a FIFO nobody reads fails (ENXIO) instead of hanging.
        open(path, O_WRONLY | O_CREAT | O_APPEND | O_NONBLOCK | O_CLOEXEC, 0o640)
    }

    // MARK: Event loop side

    /// Queues a line; never blocks, never allocates beyond the queue's own growth.
    func append(_ record: AccessLogRecord) {
        let (accepted, wakeWriter) = queue.withLock { queue -> (Bool, Bool) in
            guard queue.pending.count < configuration.capacity else {
                queue.dropped += 1
                return (false, false)
            }
            queue.pending.append(record)
            let sleeping = queue.writerSleeping
            queue.writerSleeping = false
            return (true, sleeping)
        }
        if wakeWriter { wake.signal() }
        if !accepted { dropped?.increment() }
    }

    /// Lines dropped so far because the queue was full.
    public var droppedCount: Int { queue.withLock { $0.dropped } }

    // MARK: Service

    public func run() async throws {
        let pool = NIOThreadPool(numberOfThreads: 1)
        pool.start()
        let (drained, finished) = AsyncStream<Void>.makeStream()
        pool.submit { _ in
            self.drain()
            finished.finish()
        }
        try? await gracefulShutdown()
        queue.withLock { $0.stopping = true }
        wake.signal()
        for await _ in drained {}
        try await pool.shutdownGracefully()
    }

    // MARK: The log's thread

    private func drain() {
        var descriptor = openedDescriptor
        var batch: [AccessLogRecord] = []
        var buffer: [UInt8] = []
        buffer.reserveCapacity(64 * 1024)
        var renderer = AccessLogRenderer(format: configuration.format)
        var warned = false
        var lastOpenAttempt = NIODeadline.now()
        var stopDeadline: NIODeadline?
        while true {
            let (stopping, droppedSoFar) = queue.withLock { queue -> (Bool, Int) in
                swap(&batch, &queue.pending)
                if batch.isEmpty && !queue.stopping { queue.writerSleeping = true }
                return (queue.stopping, queue.dropped)
            }
            if stopping && stopDeadline == nil { stopDeadline = .now() + TimeAmount(configuration.shutdownGrace) }
            if droppedSoFar > 0 && !warned {
                warned = true
                logger.warning(
                    "access log lines are being dropped: its destination does not keep up; see tollgate_access_log_dropped_total")
            }
            if batch.isEmpty {
                if stopping { break }
                _ = wake.wait(timeout: .now() + .seconds(1))
                continue
            }
            buffer.removeAll(keepingCapacity: true)
            for record in batch { renderer.render(record, into: &buffer) }
            let lines = batch.count
            batch.removeAll(keepingCapacity: true)
            if descriptor < 0, case .file(let path) = configuration.destination, NIODeadline.now() - lastOpenAttempt > .milliseconds(200) {
                lastOpenAttempt = .now()
                descriptor = Self.openDestination(path)
            }
            if writeAll(buffer, to: &descriptor, until: { stopDeadline.map { NIODeadline.now() >= $0 } ?? self.isStopping }) {
                written?.increment(by: lines)
            } else {
                queue.withLock { $0.dropped += lines }
                dropped?.increment(by: lines)
            }
        }
        if descriptor > STDERR_FILENO { close(descriptor) }
    }

    private var isStopping: Bool { queue.withLock { $0.stopping } }

    /// Writes `bytes` in pieces a pipe takes without blocking, waiting for room while
    /// `giveUp` is false. Returns whether everything was written.
    private func writeAll(_ bytes: [UInt8], to descriptor: inout Int32, until giveUp: () -> Bool) -> Bool {
        guard descriptor >= 0 else { return false }
        var offset = 0
        while offset < bytes.count {
            var poller = pollfd(fd: descriptor, events: Int16(POLLOUT), revents: 0)
            let ready = poll(&poller, 1, 100)
            if ready == 0 || (ready < 0 && errno == EINTR) {
                if giveUp() { return false }
                continue
            }
            let count = min(4096, bytes.count - offset)
            let done = bytes.withUnsafeBytes { write(descriptor, $0.baseAddress! + offset, count) }
            if done > 0 {
                offset += done
            } else if done < 0 && (errno == EAGAIN || errno == EINTR) {
                if giveUp() { return false }
            } else {
                // The reader went away (EPIPE) or the file failed: open it again later.
                logger.debug("cannot write the access log", metadata: ["error": "\(String(cString: strerror(errno)))"])
                if descriptor > STDERR_FILENO { close(descriptor) }
                descriptor = -1
                return false
            }
        }
        return true
    }
}
