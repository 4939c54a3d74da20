import Dispatch
import GRDB
import Logging
import NIOCore
import Synchronization
import TollgateCore

extension SQLiteKeyStore {
    func scheduleFlush() {
        writer.async { [self] in flush() }
    }

    /// The group-commit loop: one transaction per batch, until nothing is pending. After a
    /// failure it stops: the next request, the periodic flush or the health probe retries,
    /// so a broken disk is not hammered in a loop.
    func flush() {
        while let batch = ledger.takeBatch() {
            // Under steady load this loop never ends, and the health beat waits behind it:
            // each batch is progress, so a busy writer is not taken for a hung one.
            health.withLock { $0.writerBeat.progressed() }
            slowDownForTesting()
            guard commit(batch) else {
                ledger.flushStopped()
                return
            }
        }
    }

    /// Writes one batch in one transaction and answers its requests.
    /// - Returns: whether it was committed.
    private func commit(_ batch: CommitBatch) -> Bool {
        let started = NIODeadline.now()
        do {
            // A few microseconds per commit: usage written to a file that is no longer
            // at its path would be lost with the next restart.
            try checkFileOrThrow()
            let givenBack = try pool.write { db -> [GiveBackOutcome] in
                for increment in batch.increments { try UsageRows.write(increment, db) }
                return try batch.giveBacks.map { try UsageRows.write($0, db) }
            }
            configuration.metrics.finished(.commit, startedAt: started, succeeded: true, requests: batch.waiterCount)
            ledger.committed(batch, givenBack: givenBack)
            recordCommit(succeeded: true)
            return true
        } catch {
            let firstFailure = health.withLock { !$0.isFailing }
            logger.log(
                level: firstFailure ? .error : .debug,
                "cannot commit usage; answering 503 and giving the units back",
                metadata: ["error": "\(Self.describe(error))", "requests": "\(batch.waiterCount)"]
            )
            configuration.metrics.finished(.commit, startedAt: started, succeeded: false, requests: batch.waiterCount)
            ledger.failed(batch)
            recordCommit(succeeded: false)
            return false
        }
    }
}
