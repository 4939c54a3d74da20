import NIOCore
import NIOPosix
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Where the control plane's usage exports run, so that they take what the data plane
/// leaves rather than what it needs, however many run at once.
///
/// An export is store reads (a page of keys at a time) and encoding. On two cores, four
/// exports on the cooperative pool and the store's threads took three quarters of the data
/// plane's throughput. Here:
/// - pages are encoded on one thread of their own, at a nice value of ``niceness`` (Linux
///   keeps one per thread), so encoding yields the cores to the data plane;
/// - one page is read at a time across all exports, and after each read the lane stays
///   closed as long again, so exports' store reads take at most half of one core. They run
///   on the store's threads, at the store's priority (the SQLite store's queues run above
///   the event loops'), which a nice value here cannot lower.
public final class ExportLane: Sendable {
    /// How much lower than the rest of the process the encoding thread runs.
    public static let niceness: Int32 = 10

    private let pool: NIOThreadPool
    private let gate = Mutex<Gate>(Gate())

    private struct Gate {
        var busy = false
        var waiting: [CheckedContinuation<Void, Never>] = []
    }

    public init() {
        pool = NIOThreadPool(numberOfThreads: 1)
        pool.start()
        pool.submit { _ in Self.lowerPriority() }
    }

    /// Encodes on the lane's thread and returns the result.
    func encode<T: Sendable>(_ body: @escaping @Sendable () -> T) async throws -> T {
        try await pool.runIfActive(body)
    }

    /// Runs one store read of an export when no other export's read (or the pause after
    /// it) holds the lane; then holds the lane as long again.
    func read<T>(_ body: () async throws -> T) async throws -> T {
        await enter()
        do {
            let start = ContinuousClock.now
            let value = try await body()
            let took = ContinuousClock.now - start
            // The pause is part of the read's turn: a waiting export reads only after it.
            try? await Task.sleep(for: min(took, .seconds(1)))
            leave()
            return value
        } catch {
            leave()
            throw error
        }
    }

    /// Stops the thread once what was given to it has run.
    public func shutdown() async throws {
        try await pool.shutdownGracefully()
    }

    private func enter() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let admitted = gate.withLock { gate in
                if gate.busy {
                    gate.waiting.append(continuation)
                    return false
                }
                gate.busy = true
                return true
            }
            if admitted { continuation.resume() }
        }
    }

    private func leave() {
        let next = gate.withLock { gate -> CheckedContinuation<Void, Never>? in
            if gate.waiting.isEmpty {
                gate.busy = false
                return nil
            }
            return gate.waiting.removeFirst()
        }
        next?.resume()
    }

    private static func lowerPriority() {
        #if os(Linux)
            // `who` 0 is the calling thread: Linux keeps a nice value per thread
            // (setpriority(2), NOTES), so this one only.
            _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, niceness)
        #endif
    }
}
