import Foundation
import GRDB
import GRDBSQLite
import TollgateCore

/// The reads of the `keys` table, each written once (the columns and their decoding are
/// ``SQLiteSchema``'s).
enum KeyRows {
    /// A key with its change `seq`, its version: every change to the row moves it on.
    static func versioned(id: KeyID, _ db: Database) throws -> VersionedKey? {
        try Row.fetchOne(db.cachedStatement(sql: "SELECT \(SQLiteSchema.keyColumns) FROM keys WHERE id = ?"), arguments: [id.rawValue])
            .map { row in VersionedKey(key: try SQLiteSchema.decodeKey(row), version: row["seq"]) }
    }

    /// For a write that names the version it expects (`If-Match`), in its transaction:
    /// `false` if no key has the id, `.versionMismatch` if the row has moved on; `true`
    /// without a read when no version is named.
    static func isAt(_ ifVersion: Int64?, id: KeyID, _ db: Database) throws -> Bool {
        guard let ifVersion else { return true }
        guard let held = try versioned(id: id, db) else { return false }
        try held.check(ifVersion)
        return true
    }

    /// Keys in id order after `after`, at most `limit`.
    static func page(after: KeyID?, limit: Int, _ db: Database) throws -> [APIKey] {
        try Row.fetchAll(
            db,
            sql: "SELECT \(SQLiteSchema.keyColumns) FROM keys WHERE id > ? ORDER BY id LIMIT ?",
            arguments: [after?.rawValue ?? "", limit]
        ).map(SQLiteSchema.decodeKey)
    }

    /// The last change `seq`: where the change feed starts, and the import counts on from.
    static func lastSeq(_ db: Database) throws -> Int64 {
        try Int64.fetchOne(db, sql: "SELECT IFNULL(MAX(seq), 0) FROM keys") ?? 0
    }

    /// A key as a lookup loads it: its record, version and usage epoch, and its usage.
    struct Loaded {
        var key: APIKey
        var version: Int64
        var usageEpoch: Int64
        var usage: UsageSnapshot
    }

    static func load(digest: KeyDigest, _ db: Database) throws -> Loaded? {
        guard try hasKey(digest: digest, db), let record = try record(digest: digest, db) else { return nil }
        let usage = try UsageRows.usage(keyID: record.key.id, db)
        return Loaded(key: record.key, version: record.version, usageEpoch: record.usageEpoch, usage: usage)
    }

    /// Whether a key has `digest` (as its secret's or its previous one's): a probe with the
    /// raw statement, no argument array and no row. A flood of made-up secrets is a lookup
    /// each, and GRDB's row reading was most of the reader thread's time under one (perf);
    /// a key found is then read in full, one more index probe on its first use only.
    static func hasKey(digest: KeyDigest, _ db: Database) throws -> Bool {
        let statement = try db.cachedStatement(sql: "SELECT 1 FROM keys WHERE digest = ?1 OR previous_digest = ?1")
        let handle = statement.sqliteStatement
        sqlite3_reset(handle)
        defer { sqlite3_reset(handle) }
        var code = digest.withUnsafeBytes { bytes in
            sqlite3_bind_blob(handle, 1, bytes.baseAddress, Int32(bytes.count), SQLiteKeyStore.sqliteTransient)
        }
        if code == SQLITE_OK { code = sqlite3_step(handle) }
        switch code {
        case SQLITE_ROW: return true
        case SQLITE_DONE: return false
        default:
            throw DatabaseError(resultCode: ResultCode(rawValue: code), message: String(cString: sqlite3_errmsg(db.sqliteConnection)))
        }
    }

    /// A key's record, its change `seq` and its usage epoch.
    static func record(digest: KeyDigest, _ db: Database) throws -> (key: APIKey, version: Int64, usageEpoch: Int64)? {
        // Cached statements: preparing one anew per lookup costs more than the lookup.
        try Row.fetchOne(
            db.cachedStatement(sql: "SELECT \(SQLiteSchema.keyColumns), usage_epoch FROM keys WHERE digest = ? OR previous_digest = ?"),
            arguments: [Data(digest.bytes), Data(digest.bytes)]
        ).map { row in (try SQLiteSchema.decodeKey(row), row["seq"] as Int64, row["usage_epoch"] as Int64) }
    }

    /// The rows changed after `seq`, in order, at most `limit`, with their usage epochs.
    static func changes(after seq: Int64, limit: Int, _ db: Database) throws -> [Row] {
        try Row.fetchAll(
            db, sql: "SELECT \(SQLiteSchema.keyColumns), usage_epoch FROM keys WHERE seq > ? ORDER BY seq LIMIT ?",
            arguments: [seq, limit]
        )
    }
}
