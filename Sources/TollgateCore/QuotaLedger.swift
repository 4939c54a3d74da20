import NIOCore
import Synchronization

/// What a store keeps of counted decisions beyond the ledger's memory: nothing for the
/// memory store, a group-commit queue for SQLite. It lives under the ledger's lock, so a
/// decision and its entry in the journal are one step.
public protocol UsageJournal {
    init()

    /// Whether the store writes what is counted from memory, as increments (so each key
    /// keeps what the store holds while its counts differ); `false` when memory is the
    /// store's only copy.
    static var writesIncrements: Bool { get }

    /// Called under the ledger's lock once `key` has counted `decision` for `request`.
    /// - Returns: `nil` to answer the decision now; otherwise the answer waits for the
    ///   journal (which completes `promise`), and whether the store must start its writer.
    mutating func record(
        _ decision: AdmissionDecision, of request: AdmissionRequest, by key: KeyState, promise: EventLoopPromise<AdmissionDecision>
    ) -> Bool?

    /// Whether the ledger may drop `key` from memory (everything it counted is written).
    func mayDrop(_ key: KeyState) -> Bool

    /// Called under the ledger's lock to give back the units `key` took for `request`.
    /// The default, for a store whose memory is its only copy, gives them back at once; a
    /// persistent journal queues a write and gives them back in memory once the file has
    /// (so that nothing in memory is netted against units the file still counts).
    mutating func giveBack(
        _ request: AdmissionRequest, receipt: AdmissionDecision.Receipt, key: KeyState, promise: EventLoopPromise<Bool>?
    ) -> GiveBackResult
}

/// What became of a give-back handed to a ``UsageJournal``.
public enum GiveBackResult: Sendable {
    /// Done (or refused): whether anything was given back.
    case done(Bool)
    /// Queued for the store's writer, which completes the promise; `flush` asks the caller
    /// to start the writer, because none is under way.
    case queued(flush: Bool)
}

extension UsageJournal {
    public mutating func giveBack(
        _ request: AdmissionRequest, receipt: AdmissionDecision.Receipt, key: KeyState, promise: EventLoopPromise<Bool>?
    ) -> GiveBackResult {
        .done(key.giveBack(request, receipt: receipt))
    }
}

/// The journal of a store whose memory is its only copy: every decision is answered at once.
public struct NoJournal: UsageJournal {
    public init() {}

    public static var writesIncrements: Bool { false }

    public func record(
        _ decision: AdmissionDecision, of request: AdmissionRequest, by key: KeyState, promise: EventLoopPromise<AdmissionDecision>
    ) -> Bool? { nil }

    public func mayDrop(_ key: KeyState) -> Bool { true }
}

/// The in-memory authority on keys and usage for stores that live in one process
/// (memory and SQLite): decides each request under one short lock, with no I/O and no wait.
///
/// It holds the keys in a ``KeyCache`` and counts locally; what a store does beyond that
/// (SQLite's group commit) is its ``UsageJournal``, kept under the same lock.
public final class QuotaLedger<Journal: UsageJournal>: Sendable {
    /// What ``admit(_:promise:)`` did with a request.
    public enum Admission: Sendable {
        /// Decided; the caller completes the promise.
        case decided(AdmissionDecision)
        /// The journal holds the promise and completes it once the usage is written;
        /// `flush` asks the caller to start the writer, because none is under way.
        case awaitingCommit(flush: Bool)
        /// The ledger does not hold this digest: the store must look it up.
        case unknownKey
    }

    /// Only ever touched under the lock, so it may cross threads with it.
    @usableFromInline
    struct State: @unchecked Sendable {
        @usableFromInline var cache: KeyCache<KeyState>
        @usableFromInline var journal: Journal
        @usableFromInline var policies = PolicyTable()
    }

    @usableFromInline
    let state: Mutex<State>

    public init(cache: KeyCache<KeyState>.Configuration = .init()) {
        state = Mutex(State(cache: KeyCache(configuration: cache), journal: Journal()))
    }

    /// Runs `body` under the ledger's lock, for the store's journal: taking batches,
    /// answering their requests, giving units back.
    @inlinable
    package func withState<R>(_ body: (inout KeyCache<KeyState>, inout Journal) -> sending R) -> sending R {
        state.withLock { state in body(&state.cache, &state.journal) }
    }

    // MARK: Data plane

    /// Decides `request` if the key is held, counting it in memory.
    public func admit(_ request: AdmissionRequest, promise: EventLoopPromise<AdmissionDecision>) -> Admission {
        state.withLock { state -> Admission in
            let key: KeyState
            switch state.cache.lookup(request.digest, now: request.now) {
            case .held(let held): key = held
            case .unknown: return .decided(.invalidKey)
            case .miss: return .unknownKey
            }
            let decision = key.decide(request)
            guard let flush = state.journal.record(decision, of: request, by: key, promise: promise) else {
                return .decided(decision)
            }
            return .awaitingCommit(flush: flush)
        }
    }

    /// Gives back the units of an admitted request that was not served after all, if the
    /// ledger still holds its key (see ``KeyStore/giveBack(_:decision:)``), as the journal
    /// makes it.
    public func giveBack(_ request: AdmissionRequest, decision: AdmissionDecision, promise: EventLoopPromise<Bool>?) -> GiveBackResult {
        guard decision.outcome == .admitted, let receipt = decision.receipt, let id = decision.keyID else { return .done(false) }
        return state.withLock { state -> GiveBackResult in
            guard let key = state.cache.entry(id: id) else { return .done(false) }
            return state.journal.giveBack(request, receipt: receipt, key: key, promise: promise)
        }
    }

    /// Remembers that no key has this digest, so that repeated tries cost no store lookup.
    public func rememberUnknown(_ digest: KeyDigest, now: Timestamp) {
        state.withLock { $0.cache.rememberUnknown(digest, now: now) }
    }

    /// Forgets that a digest was unknown: a key with it was just created.
    public func forgetUnknown(_ digest: KeyDigest) {
        state.withLock { $0.cache.forgetUnknown(digest) }
    }

    // MARK: Keys

    /// Holds a key loaded from the store at `version` with the usage the store holds,
    /// unless the ledger holds its digest or id already (then the held key's in-memory
    /// counts are the newer ones and are kept).
    /// - Returns: whether the key was taken; the check and the insert are one step, so two
    ///   racing creates of one secret cannot both succeed.
    @discardableResult
    public func load(_ key: APIKey, version: Int64 = 0, usageEpoch: Int64 = 0, usage: UsageSnapshot? = nil) -> Bool {
        state.withLock { state in
            guard state.cache.entry(digest: key.digest) == nil, state.cache.entry(id: key.id) == nil else { return false }
            var key = key
            let policy = state.policies.policy(for: &key)
            let journal = state.journal
            let held = KeyState(
                key: key, policy: policy, version: version, usageEpoch: usageEpoch, usage: usage,
                keepsWrittenCounts: Journal.writesIncrements)
            return state.cache.insert(held) {
                journal.mayDrop($0)
            }
        }
    }

    /// How many keys the ledger holds in memory.
    public var heldKeyCount: Int {
        state.withLock { $0.cache.count }
    }

    /// Takes a changed record (revoked, updated) if the key is held under that id and the
    /// record is newer than the one held; `version` `nil` always applies (a store with one
    /// copy of each key). A `usageEpoch` beyond the held one means the usage was reset by
    /// another process: the held counts start again from zero.
    /// - Returns: whether the ledger holds the key.
    @discardableResult
    public func refresh(
        _ key: APIKey, version: Int64?, usageEpoch: Int64? = nil, storedUsage: UsageSnapshot? = nil, keepingRevocation: Bool = false
    ) -> Bool {
        state.withLock { state in
            state.cache.forgetUnknown(key.digest)
            guard let keyState = state.cache.entry(id: key.id) else { return false }
            if let version {
                guard version > keyState.version else { return true }
                keyState.version = version
            }
            let oldDigests = keyState.key.digests
            var key = key
            if keepingRevocation, let revokedAt = keyState.key.revokedAt { key.revokedAt = revokedAt }
            keyState.replace(key: key, policy: state.policies.policy(for: &key))
            state.cache.reindex(keyState, oldDigests: oldDigests)
            if let usageEpoch, usageEpoch > keyState.usageEpoch { keyState.resetUsage(epoch: usageEpoch, stored: storedUsage) }
            return true
        }
    }

    /// Edits a held key in one step under the lock (for stores whose ledger is their only
    /// copy): only the fields `edit` names change, its digests and counts stay.
    /// Its version is the held record's generation.
    /// - Returns: the edited record; `nil` if no key has that id.
    /// - Throws: `.versionMismatch` if `ifVersion` is given and is not the held generation.
    public func edit(id: KeyID, _ edit: KeyEdit, ifVersion: Int64? = nil) throws(TollgateError) -> VersionedKey? {
        try state.withLock { state throws(TollgateError) -> VersionedKey? in
            guard let keyState = state.cache.entry(id: id) else { return nil }
            try keyState.versioned.check(ifVersion)
            var key = edit.applied(to: keyState.key)
            keyState.replace(key: key, policy: state.policies.policy(for: &key))
            return keyState.versioned
        }
    }

    /// A held key with its generation as its version (for stores whose ledger is their only copy).
    public func versioned(id: KeyID) -> VersionedKey? {
        state.withLock { state in
            state.cache.entry(id: id)?.versioned
        }
    }

    /// Revokes a held key in one step under the lock (for stores whose ledger is their only
    /// copy); a key revoked already keeps its first revocation time.
    /// - Throws: `.versionMismatch` if `ifVersion` is given and is not the held generation.
    public func revoke(id: KeyID, at now: Timestamp, ifVersion: Int64? = nil) throws(TollgateError) -> APIKey? {
        try state.withLock { state throws(TollgateError) -> APIKey? in
            guard let keyState = state.cache.entry(id: id) else { return nil }
            try keyState.versioned.check(ifVersion)
            if keyState.key.revokedAt == nil {
                var key = keyState.key
                key.revokedAt = now
                keyState.replace(key: key, policy: keyState.policy)
            }
            return keyState.key
        }
    }

    /// Rotates a held key to `newDigest` in one step under the lock (for stores whose ledger
    /// is their only copy); its counts stay.
    /// - Returns: the rotated record; `nil` if no key has that id.
    /// - Throws: `.keyExists` if another key (or this one) already has `newDigest`.
    public func rotate(id: KeyID, to newDigest: KeyDigest, previousUntil until: Timestamp) throws(TollgateError) -> APIKey? {
        try state.withLock { state throws(TollgateError) -> APIKey? in
            guard let keyState = state.cache.entry(id: id) else { return nil }
            guard state.cache.entry(digest: newDigest) == nil else {
                throw TollgateError(.keyExists, "a key with that secret exists already")
            }
            let oldDigests = keyState.key.digests
            keyState.replace(key: keyState.key.rotated(to: newDigest, previousUntil: until), policy: keyState.policy)
            state.cache.reindex(keyState, oldDigests: oldDigests)
            return keyState.key
        }
    }

    /// Starts a held key's usage again from zero, as the store has done (its counts deleted,
    /// its usage epoch now `epoch`, if it keeps one).
    /// - Returns: whether the ledger holds the key.
    @discardableResult
    public func resetUsage(id: KeyID, epoch: Int64? = nil) -> Bool {
        state.withLock { state in
            guard let keyState = state.cache.entry(id: id) else { return false }
            keyState.resetUsage(epoch: epoch)
            return true
        }
    }

    /// The usage epoch of a held key (see ``KeyState/usageEpoch``).
    public func usageEpoch(of id: KeyID) -> Int64? {
        state.withLock { $0.cache.entry(id: id)?.usageEpoch }
    }

    /// The held record and usage of a key.
    public func snapshot(of id: KeyID) -> (key: APIKey, usage: UsageSnapshot)? {
        state.withLock { state in
            guard let keyState = state.cache.entry(id: id) else { return nil }
            return (keyState.key, keyState.snapshot)
        }
    }

    public func snapshot(ofDigest digest: KeyDigest) -> APIKey? {
        state.withLock { $0.cache.entry(digest: digest)?.key }
    }

    /// Every held key, sorted by id.
    public var keys: [APIKey] {
        state.withLock { state in state.cache.entries.map(\.key) }.sorted { $0.id < $1.id }
    }
}
