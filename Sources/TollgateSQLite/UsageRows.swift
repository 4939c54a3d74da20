import GRDB
import TollgateCore

/// The reads and writes of the usage tables (`counters`, `api_usage`), each written once.
enum UsageRows {
    // MARK: Reading

    /// A key's counters and per-API counts as the file holds them.
    static func usage(keyID: KeyID, _ db: Database) throws -> UsageSnapshot {
        let id = keyID.rawValue
        var counters: [String: UsageCounter] = [:]
        for row in try Row.fetchAll(
            db.cachedStatement(sql: "SELECT counter, window_start, used FROM counters WHERE key_id = ?"),
            arguments: [id]
        ) {
            counters[row["counter"]] = counter(row)
        }
        var apis: [String: APIUsage] = [:]
        for row in try Row.fetchAll(db.cachedStatement(sql: "SELECT * FROM api_usage WHERE key_id = ?"), arguments: [id]) {
            apis[row["api"]] = apiUsage(row)
        }
        return UsageSnapshot(keyID: keyID, counters: counters, apis: apis)
    }

    /// The usage of every key whose id is in `first...last`, in two range scans, by id:
    /// a page of keys costs two reads, not two per key.
    static func usage(ids first: String, through last: String, _ db: Database) throws -> (
        counters: [String: [String: UsageCounter]], apis: [String: [String: APIUsage]]
    ) {
        var counters: [String: [String: UsageCounter]] = [:]
        for row in try Row.fetchAll(
            db, sql: "SELECT key_id, counter, window_start, used FROM counters WHERE key_id BETWEEN ? AND ?", arguments: [first, last])
        {
            counters[row["key_id"], default: [:]][row["counter"]] = counter(row)
        }
        var apis: [String: [String: APIUsage]] = [:]
        for row in try Row.fetchAll(db, sql: "SELECT * FROM api_usage WHERE key_id BETWEEN ? AND ?", arguments: [first, last]) {
            apis[row["key_id"], default: [:]][row["api"]] = apiUsage(row)
        }
        return (counters, apis)
    }

    private static func counter(_ row: Row) -> UsageCounter {
        UsageCounter(windowStart: row["window_start"], used: row["used"])
    }

    private static func apiUsage(_ row: Row) -> APIUsage {
        APIUsage(
            admitted: row["admitted"],
            scopeDenied: row["scope_denied"],
            quotaExceeded: row["quota_exceeded"],
            keyRevoked: row["key_revoked"],
            keyExpired: row["key_expired"]
        )
    }

    // MARK: Writing

    /// Adds a key's increments to its rows: never absolute values, so that no write replaces
    /// counts another writer made. Also after a reset made by another process that this one
    /// has not seen yet (the change feed brings it within 200 ms): what it counted since its
    /// last write is mostly after the reset, and dropping it would lose admitted uses; at
    /// worst a few units counted just before the reset are kept.
    ///
    /// A negative increment (units given back: a request that was not served, or a hung
    /// batch that landed after its requests were answered `503`) only ever lowers a row
    /// that exists, never below zero. It has statements of its own: in an upsert,
    /// `excluded.used` is the value the insert would have stored, so clamping the inserted
    /// value at zero would clamp the update's difference too.
    static func write(_ increment: UsageIncrement, _ db: Database) throws {
        // Once: a generated id is stored packed, and its text is made on each read.
        let id = increment.keyID.rawValue
        // A later window starts at the increment; the same window adds it; an earlier one
        // (a late write for a window already over) changes nothing.
        let counters = try db.cachedStatement(
            sql: """
                INSERT INTO counters (key_id, counter, window_start, used) VALUES (?, ?, ?, ?)
                ON CONFLICT (key_id, counter) DO UPDATE SET
                    used = CASE WHEN excluded.window_start > window_start THEN excluded.used
                        WHEN excluded.window_start = window_start THEN used + excluded.used ELSE used END,
                    window_start = MAX(window_start, excluded.window_start)
                """
        )
        let lowerCounter = try db.cachedStatement(
            sql: """
                UPDATE counters SET
                    used = CASE WHEN window_start = ?3 THEN MAX(0, used + ?4) WHEN window_start < ?3 THEN 0 ELSE used END,
                    window_start = MAX(window_start, ?3)
                WHERE key_id = ?1 AND counter = ?2
                """
        )
        for counter in increment.counters {
            let statement = counter.added < 0 ? lowerCounter : counters
            try statement.execute(arguments: [id, counter.counter, counter.windowStart, counter.added])
        }
        let apis = try db.cachedStatement(
            sql: """
                INSERT INTO api_usage (key_id, api, admitted, scope_denied, quota_exceeded, key_revoked, key_expired)
                VALUES (?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (key_id, api) DO UPDATE SET admitted = admitted + excluded.admitted,
                    scope_denied = scope_denied + excluded.scope_denied, quota_exceeded = quota_exceeded + excluded.quota_exceeded,
                    key_revoked = key_revoked + excluded.key_revoked, key_expired = key_expired + excluded.key_expired
                """
        )
        let lowerAdmitted = try db.cachedStatement(
            sql: "UPDATE api_usage SET admitted = MAX(0, admitted + ?3) WHERE key_id = ?1 AND api = ?2"
        )
        for api in increment.apis {
            var added = api.added
            if added.admitted < 0 {
                try lowerAdmitted.execute(arguments: [id, api.api, added.admitted])
                added.admitted = 0
                guard added != APIUsage() else { continue }
            }
            try apis.execute(arguments: [
                id, api.api, added.admitted, added.scopeDenied, added.quotaExceeded, added.keyRevoked,
                added.keyExpired,
            ])
        }
    }

    /// See ``GiveBackWrite``: guarded by the usage epoch and the unit's window, never below
    /// zero; what each statement changed says what memory may take off.
    static func write(_ giveBack: GiveBackWrite, _ db: Database) throws -> GiveBackOutcome {
        let id = giveBack.keyID.rawValue
        let counter = try db.cachedStatement(
            sql: """
                UPDATE counters SET used = used - 1
                WHERE key_id = ?1 AND counter = ?2 AND window_start = ?3 AND used > 0
                    AND (SELECT usage_epoch FROM keys WHERE id = ?1) = ?4
                """
        )
        var counters: [Bool] = []
        for target in giveBack.counters {
            try counter.execute(arguments: [id, target.counter, target.windowStart, giveBack.usageEpoch])
            counters.append(db.changesCount == 1)
        }
        let admitted = try db.cachedStatement(
            sql: """
                UPDATE api_usage SET admitted = admitted - 1
                WHERE key_id = ?1 AND api = ?2 AND admitted > 0 AND (SELECT usage_epoch FROM keys WHERE id = ?1) = ?3
                """
        )
        try admitted.execute(arguments: [id, giveBack.api, giveBack.usageEpoch])
        return GiveBackOutcome(counters: counters, admitted: db.changesCount == 1)
    }
}
