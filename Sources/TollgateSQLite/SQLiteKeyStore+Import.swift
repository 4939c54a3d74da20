import GRDB
import GRDBSQLite
import TollgateCore

extension SQLiteKeyStore {
    /// Stores every key in ONE transaction: a batch that throws (a bad line found late, a
    /// file changed under the import) or a failing write rolls it all back, and once the
    /// commit returns every key is durable (`synchronous` as configured, `full` by default).
    ///
    /// Why it is fast: one prepared statement, bound with raw `sqlite3_bind_*` (no argument
    /// arrays per row); duplicates are left to the `UNIQUE` constraints (`INSERT OR IGNORE`
    /// counts what was new, so a second run of the same file stores nothing); and a larger
    /// page cache for the transaction, so that inserts at random places in the id and digest
    /// indexes do not spill pages to the WAL and read them back.
    ///
    /// The transaction holds the write lock while it runs (a few seconds for a million keys):
    /// a server on the same file waits for it with its commits, as for any other write.
    public func importKeys(_ batches: some KeyBatchSource) async throws(TollgateError) -> Int {
        let ledger = self.ledger
        do {
            return try await pool.write { db in
                // Bounded, so that the import's memory stays bounded too; restored below.
                let previousCacheSize = try Int.fetchOne(db, sql: "PRAGMA cache_size") ?? -2000
                try db.execute(sql: "PRAGMA cache_size = \(Self.importCacheSize)")
                defer { try? db.execute(sql: "PRAGMA cache_size = \(previousCacheSize)") }

                var seq = try KeyRows.lastSeq(db)
                let statement = try db.makeStatement(
                    sql: "INSERT OR IGNORE INTO keys (\(SQLiteSchema.insertColumns)) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
                let handle = statement.sqliteStatement
                var inserted = 0
                while let batch = try batches.next() {
                    for key in batch {
                        seq += 1
                        try Self.insert(key, seq: seq, handle, db)
                        if db.changesCount == 1 {
                            inserted += 1
                            // A secret tried before its key existed is remembered as unknown:
                            // forget it, so that the key works once committed.
                            ledger.forgetUnknown(key.digest)
                        }
                    }
                }
                return inserted
            }
        } catch let error as TollgateError {
            throw error
        } catch {
            throw TollgateError(.storeUnavailable, "the SQLite store failed an import, and stored nothing: \(Self.describe(error))")
        }
    }

    /// The import transaction's page cache, in KiB (SQLite's negative form): 48 MiB. With
    /// generated ids (random, so inserts land all over the id index) 64 MiB peaked at
    /// 180-192 MB RSS for a million lines, 48 MiB at 160-175 MB, in the same time.
    static let importCacheSize = -49_152

    /// Binds one key to the prepared insert and runs it.
    private static func insert(_ key: APIKey, seq: Int64, _ handle: OpaquePointer, _ db: Database) throws {
        sqlite3_reset(handle)
        var code = bindText(key.id.rawValue, 1, handle)
        if code == SQLITE_OK {
            code = key.digest.bytes.withUnsafeBytes { raw in
                sqlite3_bind_blob(handle, 2, raw.baseAddress, Int32(raw.count), sqliteTransient)
            }
        }
        if code == SQLITE_OK { code = bindText(key.name, 3, handle) }
        if code == SQLITE_OK { code = bindText(key.scopes.storedText, 4, handle) }
        if code == SQLITE_OK { code = bindText(key.limits.storedText, 5, handle) }
        if code == SQLITE_OK { code = sqlite3_bind_int64(handle, 6, key.createdAt.millisecondsSinceEpoch) }
        if code == SQLITE_OK { code = bindOptional(key.expiresAt?.millisecondsSinceEpoch, 7, handle) }
        if code == SQLITE_OK { code = bindOptional(key.revokedAt?.millisecondsSinceEpoch, 8, handle) }
        if code == SQLITE_OK { code = sqlite3_bind_int64(handle, 9, seq) }
        if code == SQLITE_OK {
            code = sqlite3_step(handle)
            if code == SQLITE_DONE { return }
        }
        throw DatabaseError(resultCode: ResultCode(rawValue: code), message: String(cString: sqlite3_errmsg(db.sqliteConnection)))
    }

    private static func bindText(_ text: String, _ index: Int32, _ handle: OpaquePointer) -> Int32 {
        var text = text
        return text.withUTF8 { utf8 in
            utf8.withMemoryRebound(to: CChar.self) { chars in
                // A pointer even for "", so that SQLite binds an empty text, not NULL.
                guard let base = chars.baseAddress else { return sqlite3_bind_text(handle, index, "", 0, sqliteTransient) }
                return sqlite3_bind_text(handle, index, base, Int32(chars.count), sqliteTransient)
            }
        }
    }

    private static func bindOptional(_ value: Int64?, _ index: Int32, _ handle: OpaquePointer) -> Int32 {
        value.map { sqlite3_bind_int64(handle, index, $0) } ?? sqlite3_bind_null(handle, index)
    }

    /// Tells SQLite to copy a bound value: the Swift buffer lives only during the call.
    static let sqliteTransient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)
}
