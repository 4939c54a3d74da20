import Dispatch
import Foundation
import GRDB
import Synchronization
import TollgateCore

/// The control plane: keys and usage as the admin API and the CLI read and change them.
/// Every change to a key row moves its `seq` on, so that servers following the file see it.
extension SQLiteKeyStore {
    /// The one insert path there is (``importKeys(_:)``, with its `UNIQUE` constraints and
    /// the trigger that keeps rotated-away secrets taken), for one key.
    public func createKey(_ key: APIKey) async throws(TollgateError) {
        let inserted = try await importKeys(KeyArrayBatches([key]))
        if inserted == 0 {
            throw TollgateError(.keyExists, "a key with that secret or id exists already: leave out --key to generate a new secret")
        }
    }

    public func key(id: KeyID) async throws(TollgateError) -> APIKey? {
        try await versionedKey(id: id)?.key
    }

    /// The version is the row's change `seq`, which every change to the row moves on.
    public func versionedKey(id: KeyID) async throws(TollgateError) -> VersionedKey? {
        try await read { db in try KeyRows.versioned(id: id, db) }
    }

    public func key(digest: KeyDigest) async throws(TollgateError) -> APIKey? {
        try await read { db in try KeyRows.record(digest: digest, db)?.key }
    }

    public func listKeys(after: KeyID?, limit: Int) async throws(TollgateError) -> [APIKey] {
        try await read { db in try KeyRows.page(after: after, limit: limit, db) }
    }

    /// Runs a write that ends by reading the key row back, in its transaction, and hands the
    /// ledger that row: exactly what was stored, digests included, so that a change racing
    /// in between (a rotation, an edit of other fields) is not undone in memory by an older
    /// copy the caller held.
    private func writeKey(_ body: @escaping @Sendable (Database) throws -> VersionedKey?) async throws(TollgateError) -> VersionedKey? {
        let stored = try await write(body)
        if let stored { ledger.refresh(stored.key, version: stored.version) }
        return stored
    }

    public func updateKey(_ key: APIKey, keepingRevocation: Bool) async throws(TollgateError) {
        let revocation = keepingRevocation ? "COALESCE(revoked_at, ?)" : "?"
        let stored = try await writeKey { db in
            try db.execute(
                sql: """
                    UPDATE keys SET name = ?, scopes = ?, limits = ?, expires_at = ?, revoked_at = \(revocation),
                        seq = \(SQLiteSchema.nextSeq)
                    WHERE id = ?
                    """,
                arguments: [
                    key.name, key.scopes.storedText,
                    key.limits.storedText, key.expiresAt?.millisecondsSinceEpoch,
                    key.revokedAt?.millisecondsSinceEpoch, key.id.rawValue,
                ]
            )
            guard db.changesCount == 1 else { return nil }
            return try KeyRows.versioned(id: key.id, db)
        }
        if stored == nil { throw TollgateError(.keyNotFound, "no key has id \(key.id)") }
    }

    /// One `UPDATE` of only the given columns, and the row read back in the same transaction:
    /// an edit of other columns racing in another process (or another store on the file)
    /// is kept, and the ledger takes exactly what was stored. `ifVersion` is checked in the
    /// same transaction, before the write.
    public func editKey(id: KeyID, _ edit: KeyEdit, ifVersion: Int64?) async throws(TollgateError) -> VersionedKey? {
        var assignments: [String] = []
        var values: [String?] = []
        if let name = edit.name {
            assignments.append("name = ?")
            values.append(name)
        }
        if let scopes = edit.scopes {
            assignments.append("scopes = ?")
            values.append(scopes.storedText)
        }
        if let limits = edit.limits {
            assignments.append("limits = ?")
            values.append(limits.storedText)
        }
        let expiry = edit.expiry.map { $0.instant?.millisecondsSinceEpoch }
        if expiry != nil { assignments.append("expires_at = ?") }
        assignments.append("seq = \(SQLiteSchema.nextSeq)")
        let sql = "UPDATE keys SET \(assignments.joined(separator: ", ")) WHERE id = ?"
        let texts = values
        return try await writeKey { db in
            guard try KeyRows.isAt(ifVersion, id: id, db) else { return nil }
            var arguments = StatementArguments(texts)
            if let expiry { arguments += [expiry] }
            arguments += [id.rawValue]
            try db.execute(sql: sql, arguments: arguments)
            guard db.changesCount == 1 else { return nil }
            return try KeyRows.versioned(id: id, db)
        }
    }

    /// One transaction: the new digest must be free (as a current or previous digest of any
    /// key), and the current digest moves to `previous_digest` in the same `UPDATE`.
    public func rotateKey(id: KeyID, to newDigest: KeyDigest, previousUntil: Timestamp) async throws(TollgateError) -> APIKey? {
        try await writeKey { db in
            let digest = Data(newDigest.bytes)
            let taken =
                try Bool.fetchOne(
                    db, sql: "SELECT EXISTS (SELECT 1 FROM keys WHERE digest = ? OR previous_digest = ?)", arguments: [digest, digest])
                ?? false
            if taken { throw TollgateError(.keyExists, "a key with that secret exists already") }
            try db.execute(
                sql: """
                    UPDATE keys SET previous_digest = digest, previous_until = ?, digest = ?, seq = \(SQLiteSchema.nextSeq)
                    WHERE id = ?
                    """,
                arguments: [previousUntil.millisecondsSinceEpoch, digest, id.rawValue]
            )
            guard db.changesCount == 1 else { return nil }
            return try KeyRows.versioned(id: id, db)
        }?.key
    }

    /// One conditional update, so that an edit made between a read and a write-back is
    /// never undone by the revocation; `ifVersion` is checked in the same transaction.
    public func revokeKey(id: KeyID, at now: Timestamp, ifVersion: Int64?) async throws(TollgateError) -> APIKey? {
        try await writeKey { db in
            guard try KeyRows.isAt(ifVersion, id: id, db) else { return nil }
            try db.execute(
                sql: "UPDATE keys SET revoked_at = ?, seq = \(SQLiteSchema.nextSeq) WHERE id = ? AND revoked_at IS NULL",
                arguments: [now.millisecondsSinceEpoch, id.rawValue]
            )
            return try KeyRows.versioned(id: id, db)
        }?.key
    }

    // MARK: Usage

    public func usage(id: KeyID) async throws(TollgateError) -> UsageSnapshot? {
        if let held = ledger.snapshot(of: id) { return held.usage }
        return try await read { db in try UsageRows.usage(keyID: id, db) }
    }

    /// A page of keys with their usage in one read of three range scans (keys, counters,
    /// per-API counts over the page's id range), instead of two queries per key; a key held
    /// in memory reports its held counts, as ``usage(id:)`` does.
    public func usagePage(after: KeyID?, limit: Int) async throws(TollgateError) -> [KeyUsage] {
        let stored = try await read { db -> [KeyUsage] in
            let keys = try KeyRows.page(after: after, limit: limit, db)
            guard let first = keys.first?.id.rawValue, let last = keys.last?.id.rawValue else { return [] }
            let (counters, apis) = try UsageRows.usage(ids: first, through: last, db)
            return keys.map { key in
                KeyUsage(
                    key: key,
                    usage: UsageSnapshot(keyID: key.id, counters: counters[key.id.rawValue] ?? [:], apis: apis[key.id.rawValue] ?? [:]))
            }
        }
        return stored.map { entry in
            guard let held = ledger.snapshot(of: entry.key.id) else { return entry }
            return KeyUsage(key: entry.key, usage: held.usage)
        }
    }

    /// Deletes the key's counts and moves its usage epoch on, in one transaction, on the
    /// group-commit queue: no batch is in flight meanwhile, and any write counted before the
    /// reset (here, or in a server following the change feed) is dropped by the epoch check.
    public func resetUsage(id: KeyID) async throws(TollgateError) {
        let epoch = try await storeOperation("write") {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Int64?, any Error>) in
                writer.async { [self] in
                    let result = Result { () throws -> Int64? in
                        let epoch = try pool.write { db -> Int64? in
                            try db.execute(
                                sql: "UPDATE keys SET usage_epoch = usage_epoch + 1, seq = \(SQLiteSchema.nextSeq) WHERE id = ?",
                                arguments: [id.rawValue])
                            guard db.changesCount == 1 else { return nil }
                            try db.execute(sql: "DELETE FROM counters WHERE key_id = ?", arguments: [id.rawValue])
                            try db.execute(sql: "DELETE FROM api_usage WHERE key_id = ?", arguments: [id.rawValue])
                            return try Int64.fetchOne(db, sql: "SELECT usage_epoch FROM keys WHERE id = ?", arguments: [id.rawValue])
                        }
                        if let epoch { ledger.resetUsage(id: id, epoch: epoch) }
                        return epoch
                    }
                    continuation.resume(with: result)
                }
            }
        }
        guard epoch != nil else { throw TollgateError(.keyNotFound, "no key has id \(id)") }
    }
}
