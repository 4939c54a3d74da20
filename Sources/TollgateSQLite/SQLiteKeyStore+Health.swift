import Dispatch
import GRDB
import Logging
import NIOCore
import Synchronization
import TollgateCore

/// The watchdog: what `/readyz` reads, kept true without I/O of its own.
extension SQLiteKeyStore {
    struct Health: Sendable {
        /// The last commit (or probe) failed.
        var isFailing = false
        /// A commit or lookup has run past the operation timeout.
        var isStalled = false
        var isProbing = false
        var writerBeat = QueueBeat()
        var readerBeat = QueueBeat()
    }

    /// A beat through one of the store's queues (the writer's or the reader's): a queue
    /// whose beat has not come back within the bound is stuck (a hung disk).
    struct QueueBeat: Sendable {
        /// Since when the queue owes a sign of progress; `nil` once it gave one.
        private var since: NIODeadline?
        /// Whether a beat waits in the queue: one at a time, so that beats never pile up
        /// behind a loop that is busy batch after batch.
        private var queued = false

        /// Starts the wait for progress; returns whether a beat is to be sent into the queue.
        mutating func send(now: NIODeadline) -> Bool {
            if since == nil { since = now }
            defer { queued = true }
            return !queued
        }

        /// The beat ran.
        mutating func arrived() {
            since = nil
            queued = false
        }

        /// The queue finished a batch: progress, though its beat still waits behind the next.
        mutating func progressed() {
            since = nil
        }

        func isLate(_ bound: TimeAmount, now: NIODeadline) -> Bool {
            since.map { $0 + bound <= now } ?? false
        }
    }

    /// Answers `503` to requests whose commit or lookup outlived the operation timeout,
    /// notices the file being deleted or replaced, and probes a failing store until it
    /// commits again, so that `/readyz` tells the truth without doing I/O itself.
    func watchHealth() async {
        let bound = TimeAmount(configuration.operationTimeout)
        let interval = min(Duration.milliseconds(100), configuration.operationTimeout / 4)
        await Self.repeating(every: interval) {
            let now = NIODeadline.now()
            let commitStalled = ledger.expireWaiters(olderThan: bound, now: now)
            let lookupStalled = expireLookups(olderThan: bound, now: now)
            checkFile()
            let queueStalled = beatQueues(bound, now: now)
            if noteStalled(commitStalled || lookupStalled || queueStalled) {
                writer.async { [self] in probe() }
            }
        }
    }

    /// Sends a beat through each of the writer's and the reader's queues: one that has not
    /// come back within the bound means the thread is stuck (a hung disk), even when no
    /// request is waiting on it yet.
    ///
    /// One beat in each queue at a time: under steady load a loop's batches clear the time
    /// while its beat still waits behind them, and a beat queued each tick would pile up
    /// until the load stops.
    /// - Returns: whether a queue is stuck.
    private func beatQueues(_ bound: TimeAmount, now: NIODeadline) -> Bool {
        let (beatWriter, beatReader, stalled) = health.withLock { health -> (Bool, Bool, Bool) in
            let beatWriter = health.writerBeat.send(now: now)
            let beatReader = health.readerBeat.send(now: now)
            return (beatWriter, beatReader, health.writerBeat.isLate(bound, now: now) || health.readerBeat.isLate(bound, now: now))
        }
        if beatWriter { writer.async { [self] in health.withLock { $0.writerBeat.arrived() } } }
        if beatReader { reader.async { [self] in health.withLock { $0.readerBeat.arrived() } } }
        return stalled
    }

    /// Records whether the store is stalled, logging each change.
    /// - Returns: whether to probe a failing store: a small write of its own, so that it
    ///   turns ready again without waiting for traffic.
    private func noteStalled(_ stalled: Bool) -> Bool {
        health.withLock { health -> Bool in
            if stalled && !health.isStalled {
                logger.error("the SQLite store has not answered for \(configuration.operationTimeout); answering 503")
            } else if !stalled && health.isStalled {
                logger.notice("the SQLite store answers again")
            }
            health.isStalled = stalled
            guard health.isFailing, !health.isProbing, !stalled else { return false }
            health.isProbing = true
            return true
        }
    }

    private func probe() {
        do {
            try checkFileOrThrow()
            try pool.write { db in try db.execute(sql: "PRAGMA user_version = \(SQLiteSchema.userVersion)") }
            recordCommit(succeeded: true)
        } catch {
            recordCommit(succeeded: false)
        }
        health.withLock { $0.isProbing = false }
    }

    func recordCommit(succeeded: Bool) {
        health.withLock { health in
            if succeeded && health.isFailing { logger.notice("the SQLite store commits again") }
            health.isFailing = !succeeded
        }
    }

    /// Whether the path still names the file this store opened.
    private func checkFile() {
        guard let fileIdentity else { return }
        let current = FileStamp(path: configuration.path)?.identity
        let isDetached = current != fileIdentity
        if detached.exchange(isDetached, ordering: .relaxed) != isDetached {
            if isDetached {
                logger.critical(
                    "the SQLite file '\(configuration.path)' was deleted or replaced while serving; refusing every request (503) until it is back. Restart the server to use the new file."
                )
            } else {
                logger.notice("the SQLite file '\(configuration.path)' is back; serving again")
            }
        }
    }

    func checkFileOrThrow() throws {
        checkFile()
        if detached.load(ordering: .relaxed) {
            throw TollgateError(.storeUnavailable, "the SQLite file '\(configuration.path)' was deleted or replaced")
        }
    }
}
