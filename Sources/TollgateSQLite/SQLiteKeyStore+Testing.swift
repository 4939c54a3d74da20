import Dispatch
import Foundation
import GRDB
import Synchronization
import TollgateCore

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// Hooks that let tests make the disk hang, slow down or break.
extension SQLiteKeyStore {
    /// Holds the reader and the writer until `release` is called, as a hung disk would:
    /// tests prove that requests then answer `503` within the operation timeout.
    public func stallForTesting() -> @Sendable () -> Void {
        let gate = DispatchSemaphore(value: 0)
        // Returns once both threads are held: a flush or lookup loop still running would
        // otherwise finish work queued after this call, and the disk would not look hung yet.
        let held = DispatchSemaphore(value: 0)
        writer.async {
            held.signal()
            gate.wait()
        }
        reader.async {
            held.signal()
            gate.wait()
        }
        held.wait()
        held.wait()
        return {
            gate.signal()
            gate.signal()
        }
    }

    /// The writer connection's `PRAGMA synchronous` (1 normal, 2 full): tests prove the
    /// configured level is the one in force.
    public func writerSynchronousForTesting() throws -> Int {
        try pool.writeWithoutTransaction { db in try Int.fetchOne(db, sql: "PRAGMA synchronous") ?? -1 }
    }

    /// Makes every commit and lookup batch take `delay` longer, as a slow (not hung) disk
    /// would: tests prove that a store busy batch after batch stays ready.
    public func slowDiskForTesting(_ delay: Duration) {
        slowDiskMicroseconds.store(Int(delay / .microseconds(1)), ordering: .relaxed)
    }

    func slowDownForTesting() {
        let delay = slowDiskMicroseconds.load(ordering: .relaxed)
        if delay > 0 { usleep(UInt32(delay)) }
    }

    /// Writes a key row (for the secret `damaged`) whose scopes cannot be read, as a damaged
    /// file, or one written by an older version, could hold.
    public func insertDamagedRowForTesting() async throws(TollgateError) {
        try await write { db in
            try db.execute(
                sql: """
                    INSERT INTO keys (\(SQLiteSchema.insertColumns))
                    VALUES ('key_damaged', ?, '', 'api1/*', '', 0, NULL, NULL, \(SQLiteSchema.nextSeq))
                    """,
                arguments: [Data(KeyDigest(secret: "damaged").bytes)]
            )
        }
    }

    /// Breaks the store the way a damaged file would, so that tests can prove a failed
    /// commit answers `503` instead of serving uncounted requests.
    public func dropUsageTablesForTesting() async throws(TollgateError) {
        try await write { db in try db.execute(sql: "DROP TABLE counters; DROP TABLE api_usage") }
    }
}
