import Dispatch
import Foundation
import GRDB
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization
import TollgateCore

/// The embedded store: one SQLite file in WAL mode.
///
/// The serving process is the only writer of usage: it decides in memory through a
/// ``QuotaLedger`` and persists with group commit, so a `200` leaves only once its usage
/// is committed, and one commit carries every request that arrived during the last one.
/// Keys are loaded on first use; changes the CLI makes from another process reach the
/// ledger through a poll of the `seq` column.
public final class SQLiteKeyStore: KeyStore {
    public struct Configuration: Sendable {
        /// `full` syncs the WAL on every commit, so that admitted usage survives power loss
        /// as well as `kill -9`; `normal` survives process crashes only, and is faster.
        public enum Synchronous: String, Sendable { case full, normal }

        public var path: String
        public var synchronous: Synchronous = .full
        /// How often a serving process looks for keys changed by another process.
        public var changePollInterval: Duration = .milliseconds(200)
        /// How many keys a serving process keeps in memory; the least recently used beyond
        /// it are loaded again from the file when next used. Keep it well above the number of
        /// requests that can wait on a lookup at once (open connections): a key loaded for a
        /// waiting request must still be held when that request is decided.
        public var cachedKeys = 1_000_000

        public init(path: String, synchronous: Synchronous = .full) {
            self.path = path
            self.synchronous = synchronous
        }
    }

    public let configuration: Configuration
    let pool: DatabasePool
    let ledger: QuotaLedger
    private let writer = DispatchQueue(label: "tollgate.sqlite.group-commit")
    private let reader = DispatchQueue(label: "tollgate.sqlite.key-lookup")
    private let lookups = Mutex<(pending: [(AdmissionRequest, EventLoopPromise<AdmissionDecision>)], isReading: Bool)>(([], false))
    private let logger: Logger
    /// The last change `seq` when the store opened: the change feed starts there, so no
    /// change made while the server starts up is missed.
    private let changeFeedStart: Int64

    /// Opens (and creates or migrates) the store at `configuration.path`.
    public init(configuration: Configuration, logger: Logger = Logger(label: "tollgate.sqlite")) throws(TollgateError) {
        self.configuration = configuration
        self.logger = logger
        self.ledger = QuotaLedger(configuration: .init(isPersistent: true, keyCapacity: configuration.cachedKeys))
        var config = GRDB.Configuration()
        config.busyMode = .timeout(10)
        let synchronous = configuration.synchronous.rawValue
        config.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = \(synchronous)")
        }
        do {
            pool = try DatabasePool(path: configuration.path, configuration: config)
            try SQLiteSchema.migrator.migrate(pool)
            changeFeedStart = try pool.read { db in try Int64.fetchOne(db, sql: "SELECT IFNULL(MAX(seq), 0) FROM keys") ?? 0 }
        } catch {
            throw TollgateError(
                .storeUnavailable,
                "cannot open the SQLite store at '\(configuration.path)': \(Self.describe(error)); check that the directory exists and is writable"
            )
        }
    }

    // MARK: Service

    /// Follows key changes made by other processes until graceful shutdown, then waits for
    /// the last group commit.
    public func run() async throws {
        var lastSeq = changeFeedStart
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            do {
                try await Task.sleep(for: configuration.changePollInterval)
            } catch {
                break
            }
            do {
                let since = lastSeq
                let changed = try await read { db in
                    try Row.fetchAll(db, sql: "SELECT \(SQLiteSchema.keyColumns) FROM keys WHERE seq > ? ORDER BY seq", arguments: [since])
                        .map { row in (try SQLiteSchema.decodeKey(row), row["seq"] as Int64) }
                }
                for (key, seq) in changed {
                    ledger.refresh(key, version: seq)
                    lastSeq = seq
                }
                // Refusals are counted in memory without a commit of their own; persist them.
                scheduleFlush()
            } catch {
                logger.warning("cannot read key changes", metadata: ["error": "\(error)"])
            }
        }
        flushNow()
    }

    /// How many keys the server holds in memory now.
    public var heldKeyCount: Int { ledger.heldKeyCount }

    /// Commits whatever is pending and returns when it is on disk.
    public func flushNow() {
        writer.sync { self.flush() }
    }

    // MARK: Data plane

    public func admit(_ request: AdmissionRequest, promise: EventLoopPromise<AdmissionDecision>) {
        admit(request, promise: promise, lookUpUnknown: true)
    }

    private func admit(_ request: AdmissionRequest, promise: EventLoopPromise<AdmissionDecision>, lookUpUnknown: Bool) {
        switch ledger.admit(request, promise: promise) {
        case .decided(let decision):
            promise.succeed(decision)
        case .awaitingCommit(let flush):
            if flush { scheduleFlush() }
        case .unknownKey:
            guard lookUpUnknown else {
                promise.succeed(.invalidKey)
                return
            }
            lookUp(request, promise: promise)
        }
    }

    /// Loads a key the ledger does not hold (new, or not used since start-up), off the
    /// event loop, then decides again.
    ///
    /// Lookups are batched as commits are: one reader takes every digest that arrived while
    /// the last batch was read, so a flood of unknown secrets costs one read transaction per
    /// batch rather than one per request.
    private func lookUp(_ request: AdmissionRequest, promise: EventLoopPromise<AdmissionDecision>) {
        let start = lookups.withLock { lookups -> Bool in
            lookups.pending.append((request, promise))
            guard !lookups.isReading else { return false }
            lookups.isReading = true
            return true
        }
        if start { reader.async { [self] in readLookups() } }
    }

    private func readLookups() {
        while true {
            let batch = lookups.withLock { lookups -> [(AdmissionRequest, EventLoopPromise<AdmissionDecision>)] in
                let batch = lookups.pending
                lookups.pending.removeAll(keepingCapacity: true)
                if batch.isEmpty { lookups.isReading = false }
                return batch
            }
            if batch.isEmpty { return }
            let digests = Array(Set(batch.map(\.0.digest)))
            var answers = PendingAnswers()
            do {
                let loaded = try pool.read { db in try digests.compactMap { try Self.load(digest: $0, db) } }
                for key in loaded { ledger.load(key.key, version: key.version, counters: key.counters, apis: key.apis) }
                // A change committed between that read and the loads may have reached the
                // change feed while the ledger did not hold the key, and been passed over:
                // now that the keys are held, read their records once more.
                let records = try pool.read { db in try loaded.compactMap { try Self.record(digest: $0.key.digest, db) } }
                for (key, version) in records { ledger.refresh(key, version: version) }
                let found = Set(loaded.map(\.key.digest))
                for (request, promise) in batch {
                    if found.contains(request.digest) {
                        admit(request, promise: promise, lookUpUnknown: false)
                    } else {
                        ledger.rememberUnknown(request.digest, now: request.now)
                        answers.add(promise, .invalidKey)
                    }
                }
            } catch {
                logger.error("cannot look up keys", metadata: ["error": "\(Self.describe(error))", "requests": "\(batch.count)"])
                for (_, promise) in batch { answers.add(promise, .storeUnavailable) }
            }
            answers.send()
        }
    }

    private func scheduleFlush() {
        writer.async { [self] in flush() }
    }

    /// The group-commit loop: one transaction per batch, until nothing is pending.
    private func flush() {
        while let batch = ledger.takeBatch() {
            do {
                try pool.write { db in
                    for snapshot in batch.snapshots { try Self.write(snapshot, db) }
                }
                ledger.finished(batch)
                batch.committed()
            } catch {
                logger.error(
                    "cannot commit usage; answering 503",
                    metadata: ["error": "\(Self.describe(error))", "requests": "\(batch.waiterCount)"]
                )
                ledger.finished(batch)
                batch.failed()
            }
        }
    }

    private static func write(_ snapshot: UsageSnapshot, _ db: Database) throws {
        let counters = try db.cachedStatement(
            sql: """
                INSERT INTO counters (key_id, counter, window_start, used) VALUES (?, ?, ?, ?)
                ON CONFLICT (key_id, counter) DO UPDATE SET window_start = excluded.window_start, used = excluded.used
                """
        )
        for (id, counter) in snapshot.counters {
            try counters.execute(arguments: [snapshot.keyID.rawValue, id, counter.windowStart, counter.used])
        }
        let apis = try db.cachedStatement(
            sql: """
                INSERT INTO api_usage (key_id, api, admitted, scope_denied, quota_exceeded, key_revoked, key_expired)
                VALUES (?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (key_id, api) DO UPDATE SET admitted = excluded.admitted,
                    scope_denied = excluded.scope_denied, quota_exceeded = excluded.quota_exceeded,
                    key_revoked = excluded.key_revoked, key_expired = excluded.key_expired
                """
        )
        for (api, usage) in snapshot.apis {
            try apis.execute(arguments: [
                snapshot.keyID.rawValue, api, usage.admitted, usage.scopeDenied, usage.quotaExceeded, usage.keyRevoked,
                usage.keyExpired,
            ])
        }
    }

    public func isReady() async -> Bool {
        (try? await read { db in try Int.fetchOne(db, sql: "SELECT 1") }) == 1
    }

    // MARK: Control plane

    public func createKey(_ key: APIKey) async throws(TollgateError) {
        let inserted = try await importKeys([key])
        if inserted == 0 {
            throw TollgateError(.keyExists, "a key with that secret or id exists already: leave out --key to generate a new secret")
        }
    }

    /// Inserts keys in large transactions, skipping any whose id or digest is taken.
    /// - Returns: how many were inserted.
    public func importKeys(_ keys: [APIKey]) async throws(TollgateError) -> Int {
        var inserted = 0
        for chunk in stride(from: 0, to: keys.count, by: 10_000).map({ keys[$0..<min($0 + 10_000, keys.count)] }) {
            let insertedDigests = try await write { db in
                let statement = try db.cachedStatement(
                    sql: "INSERT OR IGNORE INTO keys (\(SQLiteSchema.keyColumns)) VALUES (?, ?, ?, ?, ?, ?, ?, ?, \(SQLiteSchema.nextSeq))"
                )
                var digests: [KeyDigest] = []
                for key in chunk {
                    try statement.execute(arguments: SQLiteSchema.arguments(for: key))
                    if db.changesCount == 1 { digests.append(key.digest) }
                }
                return digests
            }
            // A secret tried before its key existed is remembered as unknown: forget it, so
            // the new key works at once. Skipped keys leave the held records alone.
            for digest in insertedDigests { ledger.forgetUnknown(digest) }
            inserted += insertedDigests.count
        }
        return inserted
    }

    public func key(id: KeyID) async throws(TollgateError) -> APIKey? {
        try await read { db in
            try Row.fetchOne(db, sql: "SELECT \(SQLiteSchema.keyColumns) FROM keys WHERE id = ?", arguments: [id.rawValue])
                .map(SQLiteSchema.decodeKey)
        }
    }

    public func key(digest: KeyDigest) async throws(TollgateError) -> APIKey? {
        try await read { db in try Self.record(digest: digest, db)?.0 }
    }

    public func listKeys(after: KeyID?, limit: Int) async throws(TollgateError) -> [APIKey] {
        try await read { db in
            try Row.fetchAll(
                db,
                sql: "SELECT \(SQLiteSchema.keyColumns) FROM keys WHERE id > ? ORDER BY id LIMIT ?",
                arguments: [after?.rawValue ?? "", limit]
            ).map(SQLiteSchema.decodeKey)
        }
    }

    public func updateKey(_ key: APIKey) async throws(TollgateError) {
        let version = try await write { db -> Int64? in
            try db.execute(
                sql: """
                    UPDATE keys SET name = ?, scopes = ?, limits = ?, expires_at = ?, revoked_at = ?, seq = \(SQLiteSchema.nextSeq)
                    WHERE id = ?
                    """,
                arguments: [
                    key.name, key.scopes.map(\.description).joined(separator: " "),
                    key.limits.map(\.description).joined(separator: " "), key.expiresAt?.millisecondsSinceEpoch,
                    key.revokedAt?.millisecondsSinceEpoch, key.id.rawValue,
                ]
            )
            guard db.changesCount == 1 else { return nil }
            return try Int64.fetchOne(db, sql: "SELECT seq FROM keys WHERE id = ?", arguments: [key.id.rawValue])
        }
        guard let version else { throw TollgateError(.keyNotFound, "no key has id \(key.id)") }
        ledger.refresh(key, version: version)
    }

    public func usage(id: KeyID) async throws(TollgateError) -> UsageSnapshot? {
        if let held = ledger.snapshot(of: id) { return held.usage }
        return try await read { db in try Self.loadUsage(keyID: id, db) }
    }

    // MARK: Reading

    struct LoadedKey {
        var key: APIKey
        var version: Int64
        var counters: [String: UsageCounter]
        var apis: [String: APIUsage]
    }

    static func load(digest: KeyDigest, _ db: Database) throws -> LoadedKey? {
        guard let (key, version) = try record(digest: digest, db) else { return nil }
        let usage = try loadUsage(keyID: key.id, db)
        return LoadedKey(key: key, version: version, counters: usage.counters, apis: usage.apis)
    }

    /// A key's record and its change `seq`.
    static func record(digest: KeyDigest, _ db: Database) throws -> (APIKey, Int64)? {
        // Cached statements: preparing one anew per lookup costs more than the lookup.
        try Row.fetchOne(
            db.cachedStatement(sql: "SELECT \(SQLiteSchema.keyColumns) FROM keys WHERE digest = ?"),
            arguments: [Data(digest.bytes)]
        ).map { row in (try SQLiteSchema.decodeKey(row), row["seq"] as Int64) }
    }

    static func loadUsage(keyID: KeyID, _ db: Database) throws -> UsageSnapshot {
        var counters: [String: UsageCounter] = [:]
        for row in try Row.fetchAll(
            db.cachedStatement(sql: "SELECT counter, window_start, used FROM counters WHERE key_id = ?"),
            arguments: [keyID.rawValue]
        ) {
            counters[row["counter"]] = UsageCounter(windowStart: row["window_start"], used: row["used"])
        }
        var apis: [String: APIUsage] = [:]
        for row in try Row.fetchAll(db.cachedStatement(sql: "SELECT * FROM api_usage WHERE key_id = ?"), arguments: [keyID.rawValue]) {
            apis[row["api"]] = APIUsage(
                admitted: row["admitted"],
                scopeDenied: row["scope_denied"],
                quotaExceeded: row["quota_exceeded"],
                keyRevoked: row["key_revoked"],
                keyExpired: row["key_expired"]
            )
        }
        return UsageSnapshot(keyID: keyID, counters: counters, apis: apis)
    }

    // MARK: Helpers

    private func read<T: Sendable>(_ body: @escaping @Sendable (Database) throws -> T) async throws(TollgateError) -> T {
        try await storeOperation("read") { try await pool.read(body) }
    }

    fileprivate func write<T: Sendable>(_ body: @escaping @Sendable (Database) throws -> T) async throws(TollgateError) -> T {
        try await storeOperation("write") { try await pool.write(body) }
    }

    /// Runs a database operation, keeping Tollgate's own errors and naming any other one.
    private func storeOperation<T>(_ kind: String, _ operation: () async throws -> T) async throws(TollgateError) -> T {
        do {
            return try await operation()
        } catch let error as TollgateError {
            throw error
        } catch {
            throw TollgateError(.storeUnavailable, "the SQLite store failed a \(kind): \(Self.describe(error))")
        }
    }

    static func describe(_ error: any Error) -> String {
        if let error = error as? DatabaseError { return error.message ?? "\(error.resultCode)" }
        return "\(error)"
    }
}

extension SQLiteKeyStore {
    /// Breaks the store the way a damaged file would, so that tests can prove a failed
    /// commit answers `503` instead of serving uncounted requests.
    public func dropUsageTablesForTesting() async throws(TollgateError) {
        try await write { db in try db.execute(sql: "DROP TABLE counters; DROP TABLE api_usage") }
    }
}
