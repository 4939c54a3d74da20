import Foundation
import GRDB
import TollgateCore

/// The embedded store's tables. Secrets never appear: a key is found by its digest.
///
/// `seq` orders every change to `keys` so that a running server can follow changes made by
/// the CLI from another process by asking only for rows past the last `seq` it saw.
enum SQLiteSchema {
    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.execute(
                sql: """
                    CREATE TABLE keys (
                        id TEXT PRIMARY KEY NOT NULL,
                        digest BLOB NOT NULL UNIQUE,
                        name TEXT NOT NULL,
                        scopes TEXT NOT NULL,
                        limits TEXT NOT NULL,
                        created_at INTEGER NOT NULL,
                        expires_at INTEGER,
                        revoked_at INTEGER,
                        seq INTEGER NOT NULL
                    );
                    CREATE INDEX keys_by_seq ON keys(seq);
                    CREATE TABLE counters (
                        key_id TEXT NOT NULL,
                        counter TEXT NOT NULL,
                        window_start INTEGER NOT NULL,
                        used INTEGER NOT NULL,
                        PRIMARY KEY (key_id, counter)
                    ) WITHOUT ROWID;
                    CREATE TABLE api_usage (
                        key_id TEXT NOT NULL,
                        api TEXT NOT NULL,
                        admitted INTEGER NOT NULL,
                        scope_denied INTEGER NOT NULL,
                        quota_exceeded INTEGER NOT NULL,
                        key_revoked INTEGER NOT NULL,
                        key_expired INTEGER NOT NULL,
                        PRIMARY KEY (key_id, api)
                    ) WITHOUT ROWID;
                    """
            )
        }
        // Usage resets move a key's epoch on, so that a write counted before a reset (by a
        // server that has not yet seen it) is dropped rather than added to the new counts.
        migrator.registerMigration("v2-usage-epoch") { db in
            try db.execute(sql: "ALTER TABLE keys ADD COLUMN usage_epoch INTEGER NOT NULL DEFAULT 0")
        }
        // Rotation: the previous secret's digest finds the key until the next rotation, and
        // opens it until `previous_until`. Unique, so that one digest finds one key.
        migrator.registerMigration("v3-rotation") { db in
            try db.execute(
                sql: """
                    ALTER TABLE keys ADD COLUMN previous_digest BLOB;
                    ALTER TABLE keys ADD COLUMN previous_until INTEGER;
                    CREATE UNIQUE INDEX keys_by_previous_digest ON keys(previous_digest);
                    """)
        }
        // One digest finds one key: a new key may not take a secret another key still
        // knows as its previous one (the UNIQUE indexes cover each column alone). The insert
        // is skipped, so `INSERT OR IGNORE` counts it as taken, like any duplicate.
        migrator.registerMigration("v4-digest-not-previous") { db in
            try db.execute(
                sql: """
                    CREATE TRIGGER keys_digest_not_previous BEFORE INSERT ON keys
                    WHEN EXISTS (SELECT 1 FROM keys WHERE previous_digest = NEW.digest)
                    BEGIN SELECT RAISE(IGNORE); END;
                    """)
        }
        return migrator
    }

    /// The columns a new row is written with (a new key has no previous digest).
    static let insertColumns = "id, digest, name, scopes, limits, created_at, expires_at, revoked_at, seq"
    /// The columns a key is read with.
    static let keyColumns = insertColumns + ", previous_digest, previous_until"

    /// Scopes and limits are stored as their spec texts joined by spaces, which neither can hold.
    static func decodeKey(_ row: Row) throws -> APIKey {
        let digestBytes: [UInt8] = Array((row["digest"] as Data?) ?? Data())
        guard let digest = KeyDigest(bytes: digestBytes) else {
            throw TollgateError(.storeUnavailable, "the store holds a key whose digest is not 32 bytes: the file is damaged")
        }
        let scopesText: String = row["scopes"]
        let limitsText: String = row["limits"]
        return APIKey(
            id: KeyID(rawValue: row["id"]),
            digest: digest,
            name: row["name"],
            scopes: try scopesText.split(separator: " ").map { text throws(TollgateError) in try ScopePattern(parsing: text) },
            limits: try limitsText.split(separator: " ").map { text throws(TollgateError) in try LimitSpec(parsing: text) },
            createdAt: Timestamp(millisecondsSinceEpoch: row["created_at"]),
            expiresAt: (row["expires_at"] as Int64?).map(Timestamp.init(millisecondsSinceEpoch:)),
            revokedAt: (row["revoked_at"] as Int64?).map(Timestamp.init(millisecondsSinceEpoch:)),
            previousDigest: (row["previous_digest"] as Data?).flatMap { KeyDigest(bytes: Array($0)) },
            previousDigestExpiresAt: (row["previous_until"] as Int64?).map(Timestamp.init(millisecondsSinceEpoch:))
        )
    }

    /// Written by the health probe: a write that changes nothing but proves commits work.
    static let userVersion = 1

    static let nextSeq = "(SELECT IFNULL(MAX(seq), 0) + 1 FROM keys)"
}
