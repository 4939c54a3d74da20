import Dispatch
import Foundation
import GRDB
import GRDBSQLite
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
    private let writer = DispatchQueue(label: "tollgate.sqlite.group-commit")
    private let reader = DispatchQueue(label: "tollgate.sqlite.key-lookup")
    private let lookups = Mutex(Lookups())
    private let health = Mutex(Health())
    /// Set while the file at `path` is no longer the one this store opened (deleted or
    /// replaced): every request is then refused, since its usage would go nowhere.
    private let detached = Atomic<Bool>(false)
    /// Microseconds each commit and lookup batch takes longer, as on a slow disk; tests only.
    private let slowDiskMicroseconds = Atomic<Int>(0)
    /// The device and inode of the file opened, to notice it being deleted or replaced.
    private let fileIdentity: FileIdentity?
    private let logger: Logger
    /// The last change `seq` when the store opened: the change feed starts there, so no
    /// change made while the server starts up is missed.
    private let changeFeedStart: Int64

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
            changeFeedStart = try pool.read { db in try Int64.fetchOne(db, sql: "SELECT IFNULL(MAX(seq), 0) FROM keys") ?? 0 }
            fileIdentity = FileIdentity(path: configuration.path)
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

    /// Follows key changes made by other processes and watches the store's health until
    /// graceful shutdown, then waits for the last group commit.
    public func run() async throws {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.followChanges() }
            group.addTask { await self.watchHealth() }
        }
        flushNow()
    }

    private func followChanges() async {
        var lastSeq = changeFeedStart
        // A change whose apply keeps failing is skipped after a few polls, so that it cannot
        // hold back every later change (a revocation, say).
        var failing: (seq: Int64, tries: Int) = (0, 0)
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            do {
                try await Task.sleep(for: configuration.changePollInterval)
            } catch {
                break
            }
            do {
                // A page at a time: a million keys imported while serving must not be read
                // (and held) in one go.
                while true {
                    let changes = try await readChanges(after: lastSeq)
                    for change in changes {
                        // Past a change only once it is applied: one whose read failed (a
                        // reset's usage, say) is tried again with the next poll.
                        do {
                            try await apply(change)
                        } catch {
                            failing = (change.seq, failing.seq == change.seq ? failing.tries + 1 : 1)
                            guard failing.tries >= 5 else { throw error }
                            logger.error(
                                "skipping a key change that could not be applied in 5 tries",
                                metadata: ["seq": "\(change.seq)", "error": "\(error)"])
                        }
                        lastSeq = change.seq
                    }
                    if changes.count < Self.changePageSize { break }
                }
                // Refusals are counted in memory without a commit of their own; persist them.
                scheduleFlush()
            } catch {
                logger.warning("cannot read key changes", metadata: ["error": "\(error)"])
            }
        }
    }

    /// Rows read from the change feed at a time.
    package static let changePageSize = 1000

    /// The changes after `seq`, a page of them. A key this process does not hold needs no
    /// record, only its digests (so that a secret remembered as unknown works at once): the
    /// rest is decoded for held keys only, so that a large import costs the feed little.
    private func readChanges(after seq: Int64) async throws(TollgateError) -> [KeyChange] {
        try await read { [ledger] db in
            try Row.fetchAll(
                db, sql: "SELECT \(SQLiteSchema.keyColumns), usage_epoch FROM keys WHERE seq > ? ORDER BY seq LIMIT ?",
                arguments: [seq, Self.changePageSize]
            )
            .map { row -> KeyChange in
                let seq: Int64 = row["seq"]
                let id: String? = row["id"]
                if let id, ledger.usageEpoch(of: KeyID(rawValue: id)) == nil {
                    let digests = [row["digest"], row["previous_digest"]].compactMap { (data: Data?) in data.flatMap(KeyDigest.init(bytes:))
                    }
                    return KeyChange(seq: seq, kind: .notHeld(digests: digests))
                }
                do {
                    return KeyChange(seq: seq, kind: .held(try SQLiteSchema.decodeKey(row), usageEpoch: row["usage_epoch"]))
                } catch {
                    let id = id.map { String($0.prefix(80)) } ?? "?"
                    return KeyChange(seq: seq, kind: .damaged("key row '\(id)': \(Self.describe(error))"))
                }
            }
        }
    }

    private func apply(_ change: KeyChange) async throws(TollgateError) {
        switch change.kind {
        case .held(let key, let usageEpoch):
            // A reset made by another process: start from what the file holds now (the
            // reset, and what this process wrote since), not from zero.
            var stored: UsageSnapshot?
            if let held = ledger.usageEpoch(of: key.id), held < usageEpoch {
                stored = try await read { db in try Self.loadUsage(keyID: key.id, db) }
            }
            ledger.refresh(key, version: change.seq, usageEpoch: usageEpoch, storedUsage: stored)
        case .notHeld(let digests):
            for digest in digests { ledger.forgetUnknown(digest) }
        case .damaged(let problem):
            logger.error("skipping a key row that cannot be read", metadata: ["seq": "\(change.seq)", "problem": "\(problem)"])
        }
    }

    /// Answers `503` to requests whose commit or lookup outlived the operation timeout,
    /// notices the file being deleted or replaced, and probes a failing store until it
    /// commits again, so that `/readyz` tells the truth without doing I/O itself.
    private func watchHealth() async {
        let bound = TimeAmount(configuration.operationTimeout)
        let interval = min(Duration.milliseconds(100), configuration.operationTimeout / 4)
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            do {
                try await Task.sleep(for: interval)
            } catch {
                break
            }
            let now = NIODeadline.now()
            let commitStalled = ledger.expireWaiters(olderThan: bound, now: now)
            let lookupStalled = expireLookups(olderThan: bound, now: now)
            checkFile()
            // A beat through each of the writer's and the reader's queues: one that has not
            // come back within the bound means the thread is stuck (a hung disk), even when
            // no request is waiting on it yet.
            // One beat in each queue at a time: under steady load a loop's batches clear the
            // time while its beat still waits behind them, and a beat queued each tick would
            // pile up until the load stops.
            let (beatWriter, beatReader, queueStalled) = health.withLock { health -> (Bool, Bool, Bool) in
                let beatWriter = health.writerBeat.send(now: now)
                let beatReader = health.readerBeat.send(now: now)
                return (beatWriter, beatReader, health.writerBeat.isLate(bound, now: now) || health.readerBeat.isLate(bound, now: now))
            }
            if beatWriter { writer.async { [self] in health.withLock { $0.writerBeat.arrived() } } }
            if beatReader { reader.async { [self] in health.withLock { $0.readerBeat.arrived() } } }
            let stalled = commitStalled || lookupStalled || queueStalled
            let probe = health.withLock { health -> Bool in
                if stalled {
                    if !health.isStalled {
                        logger.error("the SQLite store has not answered for \(configuration.operationTimeout); answering 503")
                    }
                    health.isStalled = true
                } else {
                    if health.isStalled { logger.notice("the SQLite store answers again") }
                    health.isStalled = false
                }
                // A failing store is retried by a small write of its own, so that it turns
                // ready again without waiting for traffic.
                guard health.isFailing, !health.isProbing, !stalled else { return false }
                health.isProbing = true
                return true
            }
            if probe { writer.async { [self] in self.probe() } }
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

    private func recordCommit(succeeded: Bool) {
        health.withLock { health in
            if succeeded && health.isFailing { logger.notice("the SQLite store commits again") }
            health.isFailing = !succeeded
        }
    }

    /// Whether the path still names the file this store opened.
    private func checkFile() {
        guard let fileIdentity else { return }
        let current = FileIdentity(path: configuration.path)
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

    private func checkFileOrThrow() throws {
        checkFile()
        if detached.load(ordering: .relaxed) {
            throw TollgateError(.storeUnavailable, "the SQLite file '\(configuration.path)' was deleted or replaced")
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

    private func admit(_ request: AdmissionRequest, promise: EventLoopPromise<AdmissionDecision>, lookUpUnknown: Bool) {
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

    /// Loads a key the ledger does not hold (new, or not used since start-up), off the
    /// event loop, then decides again.
    ///
    /// Lookups are batched as commits are: one reader takes every digest that arrived while
    /// the last batch was read, so a flood of unknown secrets costs one read transaction per
    /// batch rather than one per request.
    private func lookUp(_ request: AdmissionRequest, promise: EventLoopPromise<AdmissionDecision>) {
        let start = lookups.withLock { lookups -> Bool in
            lookups.pending.append(Lookup(request: request, promise: promise, enqueuedAt: .now()))
            guard !lookups.isReading else { return false }
            lookups.isReading = true
            return true
        }
        if start { reader.async { [self] in readLookups() } }
    }

    private func readLookups() {
        while true {
            let batch = lookups.withLock { lookups -> [Lookup] in
                lookups.batchNumber += 1
                swap(&lookups.reading, &lookups.pending)
                lookups.pending.removeAll(keepingCapacity: true)
                // Only a batch being read has a start: one left on the empty last turn made
                // the watchdog call an idle reader hung two seconds later.
                if lookups.reading.isEmpty {
                    lookups.isReading = false
                    lookups.readingSince = nil
                } else {
                    lookups.readingSince = .now()
                }
                return lookups.reading
            }
            if batch.isEmpty { return }
            // As in `flush`: a reader busy batch after batch is not a hung one.
            health.withLock { $0.readerBeat.progressed() }
            slowDownForTesting()
            let number = lookups.withLock { $0.batchNumber }
            let digests = Array(Set(batch.map(\.request.digest)))
            let started = NIODeadline.now()
            var answers = PendingAnswers()
            let outcome = Result { () throws -> (found: Set<KeyDigest>, damaged: Set<KeyDigest>) in
                // A row that cannot be decoded fails its own requests (503), not the batch.
                let (loaded, damaged) = try pool.read { db -> ([LoadedKey], [KeyDigest: String]) in
                    var loaded: [LoadedKey] = []
                    var damaged: [KeyDigest: String] = [:]
                    for digest in digests {
                        do {
                            if let key = try Self.load(digest: digest, db) { loaded.append(key) }
                        } catch let error as DatabaseError {
                            throw error
                        } catch {
                            damaged[digest] = "\(error)"
                        }
                    }
                    return (loaded, damaged)
                }
                for problem in damaged.values {
                    logger.error("a key row cannot be read; its requests answer 503", metadata: ["problem": "\(problem)"])
                }
                for key in loaded { ledger.load(key.key, version: key.version, usageEpoch: key.usageEpoch, usage: key.usage) }
                // A change committed between that read and the loads may have reached the
                // change feed while the ledger did not hold the key, and been passed over:
                // now that the keys are held, read their records once more.
                // A reset among those changes restarts the held counts from what the file
                // holds now, as the change feed does, not from zero.
                let records = try pool.read { db in
                    try loaded.compactMap { held -> (record: (key: APIKey, version: Int64, usageEpoch: Int64), usage: UsageSnapshot?)? in
                        guard let record = try? Self.record(digest: held.key.digest, db) else { return nil }
                        // Against the epoch the ledger holds: the key may have been held
                        // already (by id, under an older digest), and not taken from this read.
                        let heldEpoch = ledger.usageEpoch(of: record.key.id) ?? held.usageEpoch
                        let usage = record.usageEpoch > heldEpoch ? try Self.loadUsage(keyID: record.key.id, db) : nil
                        return (record, usage)
                    }
                }
                for (record, usage) in records {
                    ledger.refresh(record.key, version: record.version, usageEpoch: record.usageEpoch, storedUsage: usage)
                }
                return (Set(loaded.flatMap(\.key.digests)), Set(damaged.keys))
            }
            configuration.metrics.finished(.lookup, startedAt: started, result: outcome, requests: digests.count)
            // Requests the watchdog answered `503` meanwhile are not answered again.
            let waiting = lookups.withLock { lookups -> [Lookup] in
                guard lookups.batchNumber == number else { return [] }
                let waiting = lookups.reading
                lookups.reading = []
                lookups.readingSince = nil
                return waiting
            }
            switch outcome {
            case .success(let (found, damaged)):
                for lookup in waiting {
                    if damaged.contains(lookup.request.digest) {
                        answers.add(lookup.promise, .storeUnavailable)
                    } else if found.contains(lookup.request.digest) {
                        admit(lookup.request, promise: lookup.promise, lookUpUnknown: false)
                    } else {
                        ledger.rememberUnknown(lookup.request.digest, now: lookup.request.now)
                        answers.add(lookup.promise, .invalidKey)
                    }
                }
            case .failure(let error):
                logger.error("cannot look up keys", metadata: ["error": "\(Self.describe(error))", "requests": "\(batch.count)"])
                for lookup in waiting { answers.add(lookup.promise, .storeUnavailable) }
            }
            answers.send()
        }
    }

    /// Answers `503` to lookups that have waited longer than `bound`.
    /// - Returns: whether the reader is behind: the lookup in flight has run for longer than
    ///   `bound`, or lookups waited that long for one to start.
    private func expireLookups(olderThan bound: TimeAmount, now: NIODeadline = .now()) -> Bool {
        let (expired, stalled) = lookups.withLock { lookups -> ([Lookup], Bool) in
            var expired: [Lookup] = []
            var stalled = false
            if let since = lookups.readingSince, since + bound <= now {
                stalled = true
                expired = lookups.reading
                lookups.reading = []
                lookups.readingSince = nil
            }
            let late = lookups.pending.removePrefix { $0.enqueuedAt + bound <= now }
            expired += late
            return (expired, stalled || !late.isEmpty)
        }
        if !expired.isEmpty {
            var answers = PendingAnswers()
            for lookup in expired { answers.add(lookup.promise, .storeUnavailable) }
            answers.send()
        }
        return stalled
    }

    private func scheduleFlush() {
        writer.async { [self] in flush() }
    }

    /// The group-commit loop: one transaction per batch, until nothing is pending. After a
    /// failure it stops: the next request, the periodic flush or the health probe retries,
    /// so a broken disk is not hammered in a loop.
    private func flush() {
        while let batch = ledger.takeBatch() {
            // Under steady load this loop never ends, and the health beat waits behind it:
            // each batch is progress, so a busy writer is not taken for a hung one.
            health.withLock { $0.writerBeat.progressed() }
            slowDownForTesting()
            let started = NIODeadline.now()
            do {
                // A few microseconds per commit: usage written to a file that is no longer
                // at its path would be lost with the next restart.
                try checkFileOrThrow()
                let givenBack = try pool.write { db -> [GiveBackOutcome] in
                    for increment in batch.increments { try Self.write(increment, db) }
                    return try batch.giveBacks.map { try Self.write($0, db) }
                }
                configuration.metrics.finished(.commit, startedAt: started, succeeded: true, requests: batch.waiterCount)
                ledger.committed(batch, givenBack: givenBack)
                recordCommit(succeeded: true)
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
                ledger.flushStopped()
                return
            }
        }
    }

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
    private static func write(_ increment: UsageIncrement, _ db: Database) throws {
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
    private static func write(_ giveBack: GiveBackWrite, _ db: Database) throws -> GiveBackOutcome {
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

    /// Ready while commits succeed, nothing has hung past the operation timeout and the
    /// file is the one opened. Reads state only, so `/readyz` answers even on a hung disk.
    public func isReady() async -> Bool {
        guard !detached.load(ordering: .relaxed) else { return false }
        return health.withLock { !$0.isFailing && !$0.isStalled }
    }

    // MARK: Control plane

    /// The one insert path there is (`importKeys`, with its `UNIQUE` constraints and the
    /// trigger that keeps rotated-away secrets taken), for one key.
    public func createKey(_ key: APIKey) async throws(TollgateError) {
        let inserted = try await importKeys(KeyArrayBatches([key]))
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
                // A secret rotated away from another key still finds that key: it is taken too.
                let statement = try db.cachedStatement(
                    sql: """
                        INSERT OR IGNORE INTO keys (\(SQLiteSchema.insertColumns))
                        SELECT ?, ?, ?, ?, ?, ?, ?, ?, \(SQLiteSchema.nextSeq)
                        WHERE NOT EXISTS (SELECT 1 FROM keys WHERE previous_digest = ?)
                        """
                )
                var digests: [KeyDigest] = []
                for key in chunk {
                    var arguments = SQLiteSchema.arguments(for: key)
                    arguments += [Data(key.digest.bytes)]
                    try statement.execute(arguments: arguments)
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

    /// The version is the row's change `seq`, which every change to the row moves on.
    public func versionedKey(id: KeyID) async throws(TollgateError) -> VersionedKey? {
        try await read { db in try Self.versioned(id: id, db) }
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

    static func versioned(id: KeyID, _ db: Database) throws -> VersionedKey? {
        try Row.fetchOne(db, sql: "SELECT \(SQLiteSchema.keyColumns) FROM keys WHERE id = ?", arguments: [id.rawValue])
            .map { row in VersionedKey(key: try SQLiteSchema.decodeKey(row), version: row["seq"]) }
    }

    public func key(digest: KeyDigest) async throws(TollgateError) -> APIKey? {
        try await read { db in try Self.record(digest: digest, db)?.key }
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

    public func updateKey(_ key: APIKey, keepingRevocation: Bool) async throws(TollgateError) {
        let revocation = keepingRevocation ? "COALESCE(revoked_at, ?)" : "?"
        let version = try await write { db -> (APIKey, Int64)? in
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
            // The row as written, digests included: a rotation between the caller's read and
            // this write must not be undone in memory by the caller's older copy.
            return try Row.fetchOne(db, sql: "SELECT \(SQLiteSchema.keyColumns) FROM keys WHERE id = ?", arguments: [key.id.rawValue])
                .map { row in (try SQLiteSchema.decodeKey(row), row["seq"] as Int64) }
        }
        guard let (stored, version) = version else { throw TollgateError(.keyNotFound, "no key has id \(key.id)") }
        ledger.refresh(stored, version: version)
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
        let edited = try await write { db -> VersionedKey? in
            guard try Self.isAt(ifVersion, id: id, db) else { return nil }
            var arguments = StatementArguments(texts)
            if let expiry { arguments += [expiry] }
            arguments += [id.rawValue]
            try db.execute(sql: sql, arguments: arguments)
            guard db.changesCount == 1 else { return nil }
            return try Self.versioned(id: id, db)
        }
        guard let edited else { return nil }
        ledger.refresh(edited.key, version: edited.version)
        return edited
    }

    /// One transaction: the new digest must be free (as a current or previous digest of any
    /// key), and the current digest moves to `previous_digest` in the same `UPDATE`.
    public func rotateKey(id: KeyID, to newDigest: KeyDigest, previousUntil: Timestamp) async throws(TollgateError) -> APIKey? {
        let rotated = try await write { db -> (APIKey, Int64)? in
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
            return try Row.fetchOne(db, sql: "SELECT \(SQLiteSchema.keyColumns) FROM keys WHERE id = ?", arguments: [id.rawValue])
                .map { row in (try SQLiteSchema.decodeKey(row), row["seq"] as Int64) }
        }
        guard let (key, version) = rotated else { return nil }
        ledger.refresh(key, version: version)
        return key
    }

    /// One conditional update, so that an edit made between a read and a write-back is
    /// never undone by the revocation; `ifVersion` is checked in the same transaction.
    public func revokeKey(id: KeyID, at now: Timestamp, ifVersion: Int64?) async throws(TollgateError) -> APIKey? {
        let revoked = try await write { db -> (APIKey, Int64)? in
            guard try Self.isAt(ifVersion, id: id, db) else { return nil }
            try db.execute(
                sql: "UPDATE keys SET revoked_at = ?, seq = \(SQLiteSchema.nextSeq) WHERE id = ? AND revoked_at IS NULL",
                arguments: [now.millisecondsSinceEpoch, id.rawValue]
            )
            return try Row.fetchOne(db, sql: "SELECT \(SQLiteSchema.keyColumns) FROM keys WHERE id = ?", arguments: [id.rawValue])
                .map { row in (try SQLiteSchema.decodeKey(row), row["seq"] as Int64) }
        }
        guard let (key, version) = revoked else { return nil }
        ledger.refresh(key, version: version)
        return key
    }

    public func usage(id: KeyID) async throws(TollgateError) -> UsageSnapshot? {
        if let held = ledger.snapshot(of: id) { return held.usage }
        return try await read { db in try Self.loadUsage(keyID: id, db) }
    }

    /// A page of keys with their usage in one read of three range scans (keys, counters,
    /// per-API counts over the page's id range), instead of two queries per key; a key held
    /// in memory reports its held counts, as ``usage(id:)`` does.
    public func usagePage(after: KeyID?, limit: Int) async throws(TollgateError) -> [KeyUsage] {
        let stored = try await read { db -> [KeyUsage] in
            let keys = try Row.fetchAll(
                db,
                sql: "SELECT \(SQLiteSchema.keyColumns) FROM keys WHERE id > ? ORDER BY id LIMIT ?",
                arguments: [after?.rawValue ?? "", limit]
            ).map(SQLiteSchema.decodeKey)
            guard let first = keys.first?.id.rawValue, let last = keys.last?.id.rawValue else { return [] }
            var counters: [String: [String: UsageCounter]] = [:]
            for row in try Row.fetchAll(
                db, sql: "SELECT key_id, counter, window_start, used FROM counters WHERE key_id BETWEEN ? AND ?", arguments: [first, last])
            {
                counters[row["key_id"], default: [:]][row["counter"]] = UsageCounter(windowStart: row["window_start"], used: row["used"])
            }
            var apis: [String: [String: APIUsage]] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT * FROM api_usage WHERE key_id BETWEEN ? AND ?", arguments: [first, last]) {
                apis[row["key_id"], default: [:]][row["api"]] = APIUsage(
                    admitted: row["admitted"],
                    scopeDenied: row["scope_denied"],
                    quotaExceeded: row["quota_exceeded"],
                    keyRevoked: row["key_revoked"],
                    keyExpired: row["key_expired"]
                )
            }
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

    // MARK: Reading

    struct LoadedKey {
        var key: APIKey
        var version: Int64
        var usageEpoch: Int64
        var usage: UsageSnapshot
    }

    static func load(digest: KeyDigest, _ db: Database) throws -> LoadedKey? {
        guard try hasKey(digest: digest, db), let record = try record(digest: digest, db) else { return nil }
        let usage = try loadUsage(keyID: record.key.id, db)
        return LoadedKey(key: record.key, version: record.version, usageEpoch: record.usageEpoch, usage: usage)
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
            sqlite3_bind_blob(handle, 1, bytes.baseAddress, Int32(bytes.count), sqliteTransient)
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

    static func loadUsage(keyID: KeyID, _ db: Database) throws -> UsageSnapshot {
        let id = keyID.rawValue
        var counters: [String: UsageCounter] = [:]
        for row in try Row.fetchAll(
            db.cachedStatement(sql: "SELECT counter, window_start, used FROM counters WHERE key_id = ?"),
            arguments: [id]
        ) {
            counters[row["counter"]] = UsageCounter(windowStart: row["window_start"], used: row["used"])
        }
        var apis: [String: APIUsage] = [:]
        for row in try Row.fetchAll(db.cachedStatement(sql: "SELECT * FROM api_usage WHERE key_id = ?"), arguments: [id]) {
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
    struct KeyChange: Sendable {
        var seq: Int64
        var kind: Kind

        enum Kind: Sendable {
            /// A key this process holds: its record and usage epoch.
            case held(APIKey, usageEpoch: Int64)
            /// A key it does not hold: only its digests, to forget as unknown.
            case notHeld(digests: [KeyDigest])
            /// A row that cannot be read: skipped and logged.
            case damaged(String)
        }
    }

    struct Lookup: Sendable {
        var request: AdmissionRequest
        var promise: EventLoopPromise<AdmissionDecision>
        var enqueuedAt: NIODeadline
    }

    /// Unknown digests waiting for the reader, and the batch it is reading.
    struct Lookups: Sendable {
        var pending: [Lookup] = []
        var reading: [Lookup] = []
        var readingSince: NIODeadline?
        var batchNumber = 0
        var isReading = false
    }

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

    private func slowDownForTesting() {
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
