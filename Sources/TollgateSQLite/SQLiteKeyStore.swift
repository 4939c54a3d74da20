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
///
/// Its rooms: the data plane here; group commit in `+Commit` (its queue in
/// ``GroupCommit``), key lookups in `+Lookups` (both batched by a ``BatchQueue``); the
/// change feed in `+ChangeFeed`; the watchdog in `+Health`; the admin side in `+Keys` and
/// `+Import`; the SQL in ``SQLiteSchema``, ``KeyRows`` and ``UsageRows``.
public final class SQLiteKeyStore: KeyStore {
    public struct Configuration: Sendable {
        /// `full` syncs the WAL on every commit, so that admitted usage survives power loss
        /// as well as `kill -9`; `normal` survives process crashes only, and is faster.
        public enum Synchronous: String, Sendable { case full, normal }

        public var path: String
        public var synchronous: Synchronous = .full
        /// How often a serving process looks for keys changed by another process, and
        /// writes the refusals it counted since the last commit.
        public var changePollInterval: Duration = .milliseconds(200)
        /// How many keys a serving process keeps in memory; the least recently used beyond
        /// it are loaded again from the file when next used. Keep it well above the number of
        /// requests that can wait on a lookup at once (open connections): a key loaded for a
        /// waiting request must still be held when that request is decided.
        public var cachedKeys = 1_000_000
        /// How long a commit or a key lookup may take before the requests waiting on it are
        /// answered `503 store_unavailable` (a hung disk must not hang requests). Their units
        /// are given back: a request that was not served takes nothing.
        public var operationTimeout: Duration = .seconds(2)
        /// How long a secret no key has is refused without asking the file again.
        public var unknownKeyMilliseconds: Int64 = 1000
        /// Commits and lookups: counts, errors, latency, batch sizes (none by default).
        public var metrics = StoreMetrics.disabled

        public init(path: String, synchronous: Synchronous = .full) {
            self.path = path
            self.synchronous = synchronous
        }
    }

    public let configuration: Configuration
    let pool: DatabasePool
    let ledger: QuotaLedger<GroupCommit>
    let writer = DispatchQueue(label: "tollgate.sqlite.group-commit")
    let reader = DispatchQueue(label: "tollgate.sqlite.key-lookup")
    /// Unknown digests waiting for the reader, and the batch it is reading.
    let lookups = Mutex(BatchQueue<Lookup>())
    let health = Mutex(Health())
    /// Set while the file at `path` is no longer the one this store opened (deleted or
    /// replaced): every request is then refused, since its usage would go nowhere.
    let detached = Atomic<Bool>(false)
    /// Microseconds each commit and lookup batch takes longer, as on a slow disk; tests only.
    let slowDiskMicroseconds = Atomic<Int>(0)
    /// The device and inode of the file opened, to notice it being deleted or replaced.
    let fileIdentity: FileStamp.Identity?
    let logger: Logger
    /// The last change `seq` when the store opened: the change feed starts there, so no
    /// change made while the server starts up is missed.
    let changeFeedStart: Int64

    /// Opens (and creates or migrates) the store at `configuration.path`.
    public init(configuration: Configuration, logger: Logger = Logger(label: "tollgate.sqlite")) throws(TollgateError) {
        self.configuration = configuration
        self.logger = logger
        self.ledger = QuotaLedger(
            cache: .init(capacity: configuration.cachedKeys, unknownKeyMilliseconds: configuration.unknownKeyMilliseconds)
        )
        var config = GRDB.Configuration()
        config.busyMode = .timeout(10)
        let synchronous = configuration.synchronous.rawValue
        config.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = \(synchronous)")
        }
        SQLiteFileMode.createIfMissing(path: configuration.path)
        do {
            pool = try DatabasePool(path: configuration.path, configuration: config)
            // GRDB sets `synchronous = NORMAL` on the writer when it turns WAL on, after
            // `prepareDatabase` ran: without this, `full` was never in force, and a commit
            // (a `200`) survived a crash of the process but not of the machine.
            try pool.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA synchronous = \(synchronous)") }
            try SQLiteSchema.migrator.migrate(pool)
            changeFeedStart = try pool.read { db in try KeyRows.lastSeq(db) }
            fileIdentity = FileStamp(path: configuration.path)?.identity
        } catch {
            // The hint must fit the cause: a file that is not a database is not a permissions problem.
            let hint =
                (error as? DatabaseError)?.resultCode == .SQLITE_NOTADB
                ? "give --store the path of a Tollgate database, or a path where none exists yet to make one"
                : "check that the directory exists and is writable"
            throw TollgateError(
                .storeUnavailable,
                "cannot open the SQLite store at '\(configuration.path)': \(Self.describe(error)); \(hint)"
            )
        }
    }

    // MARK: Service

    /// Follows key changes made by other processes, writes refusals counted in memory, and
    /// watches the store's health until graceful shutdown, then waits for the last group
    /// commit.
    public func run() async throws {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.followChanges() }
            // Refusals are counted in memory without a commit of their own: persist them,
            // whatever the change feed is doing (it may be failing to read).
            group.addTask { await Self.repeating(every: self.configuration.changePollInterval) { self.scheduleFlush() } }
            group.addTask { await self.watchHealth() }
        }
        flushNow()
    }

    /// Runs `body` every `interval` until graceful shutdown or cancellation: the shape of
    /// each of the store's background loops.
    static func repeating(every interval: Duration, _ body: () async -> Void) async {
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            do {
                try await Task.sleep(for: interval)
            } catch {
                return
            }
            await body()
        }
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

    func admit(_ request: AdmissionRequest, promise: EventLoopPromise<AdmissionDecision>, lookUpUnknown: Bool) {
        // Usage counted against a file that is gone would be lost: serve nothing.
        if detached.load(ordering: .relaxed) {
            promise.succeed(.storeUnavailable)
            return
        }
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

    /// In the file with the next batch, then in memory as far as the file took it (see
    /// ``GroupCommit/giveBack(_:receipt:key:promise:)``); a key no longer held gives nothing.
    public func giveBack(_ request: AdmissionRequest, decision: AdmissionDecision, promise: EventLoopPromise<Bool>?) {
        switch ledger.giveBack(request, decision: decision, promise: promise) {
        case .done(let given): promise?.succeed(given)
        case .queued(let flush): if flush { scheduleFlush() }
        }
    }

    /// Ready while commits succeed, nothing has hung past the operation timeout and the
    /// file is the one opened. Reads state only, so `/readyz` answers even on a hung disk.
    public func isReady() async -> Bool {
        guard !detached.load(ordering: .relaxed) else { return false }
        return health.withLock { !$0.isFailing && !$0.isStalled }
    }

    // MARK: Database operations

    func read<T: Sendable>(_ body: @escaping @Sendable (Database) throws -> T) async throws(TollgateError) -> T {
        try await storeOperation("read") { try await pool.read(body) }
    }

    func write<T: Sendable>(_ body: @escaping @Sendable (Database) throws -> T) async throws(TollgateError) -> T {
        try await storeOperation("write") { try await pool.write(body) }
    }

    /// Runs a database operation, keeping Tollgate's own errors and naming any other one.
    func storeOperation<T>(_ kind: String, _ operation: () async throws -> T) async throws(TollgateError) -> T {
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
