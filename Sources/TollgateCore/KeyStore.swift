import NIOCore
import ServiceLifecycle

/// Where keys and usage live. Every store (memory, SQLite, Redis) passes one conformance
/// suite, and the data plane and admin app are generic over it, so that the hot path is
/// specialized for the store chosen at start-up.
///
/// A store is a `Service`: `run()` does its background work (group commit, change feeds)
/// and returns once everything admitted is durable after graceful shutdown.
public protocol KeyStore: Service {
    // MARK: Data plane

    /// Decides a request and, if it is admitted, records its usage; completes `promise`
    /// with the decision only once an admitted request's usage is durable.
    ///
    /// Called on the request's event loop; must not block it.
    func admit(_ request: AdmissionRequest, promise: EventLoopPromise<AdmissionDecision>)

    /// Gives back the units an admitted request took, for a request that was not served
    /// after all (its upstream failed, on a route with `give_back_on_5xx`).
    ///
    /// One unit goes back to each counter the admission took from, only while that counter
    /// is still in the window the unit was taken in (never into a later one) and never below
    /// zero; the key's admitted count for the API goes back by one. After a usage reset or a
    /// change of the key's limits (``AdmissionDecision/receipt`` no longer matches), nothing
    /// is given back. Best effort and never more: a give-back that cannot be made (the store
    /// is down, the key left the cache) gives nothing, so the request stays counted.
    ///
    /// Called on the request's event loop; must not block it. The data plane passes no
    /// `promise` and does not wait; one passed is completed with whether anything was given
    /// back. A store with a file (SQLite) writes the give-back first, with its next batch,
    /// and takes it off the counts in memory after, as far as the file took it: memory never
    /// nets against units the file still counts.
    func giveBack(_ request: AdmissionRequest, decision: AdmissionDecision, promise: EventLoopPromise<Bool>?)

    /// Whether the store can serve requests now, for `/readyz`.
    func isReady() async -> Bool

    // MARK: Control plane

    /// Stores a new key for `digest`; fails with `.keyExists` if the digest or id is taken.
    func createKey(_ key: APIKey) async throws(TollgateError)

    func key(id: KeyID) async throws(TollgateError) -> APIKey?

    /// A key with its version, for an HTTP `ETag`.
    func versionedKey(id: KeyID) async throws(TollgateError) -> VersionedKey?

    func key(digest: KeyDigest) async throws(TollgateError) -> APIKey?

    /// Keys in id order, starting after `after`, at most `limit`.
    func listKeys(after: KeyID?, limit: Int) async throws(TollgateError) -> [APIKey]

    /// Replaces a key's record (name, scopes, limits, expiry); usage is kept. A revocation is
    /// kept too unless `keepingRevocation` is false (restoring the demo keys): an edit made
    /// from a copy read before a revocation must never bring the key back. Edits of some
    /// fields use ``editKey(id:_:)``, which cannot undo a racing edit of other fields.
    func updateKey(_ key: APIKey, keepingRevocation: Bool) async throws(TollgateError)

    /// Changes only the fields `edit` names, in one step, so that edits racing on different
    /// fields (two admin calls, the CLI and a server, two instances on one Redis) all land.
    /// Digests, rotation, revocation and usage stay; the cache of this instance takes the
    /// new record at once, other instances through the store's change feed.
    ///
    /// With `ifVersion`, the edit is made only if the record is still at that version (read
    /// and checked in the same step as the write).
    /// - Returns: the record as stored after the edit, or `nil` if no key has that id.
    /// - Throws: `.versionMismatch` if the record is no longer at `ifVersion`.
    func editKey(id: KeyID, _ edit: KeyEdit, ifVersion: Int64?) async throws(TollgateError) -> VersionedKey?

    /// Revokes a key in one step: from then on it is refused with `key_revoked`. A key
    /// revoked already keeps its first revocation time.
    /// With `ifVersion`, only if the record is still at that version (checked in one step).
    /// - Returns: the revoked record, or `nil` if no key has that id.
    /// - Throws: `.versionMismatch` if the record is no longer at `ifVersion`.
    func revokeKey(id: KeyID, at now: Timestamp, ifVersion: Int64?) async throws(TollgateError) -> APIKey?

    /// Gives a key a new secret (its digest `newDigest`) in one step: id, scopes, limits
    /// and usage stay, and the current secret keeps opening the key until `previousUntil`,
    /// then is refused with `key_revoked`. A secret rotated away before is forgotten.
    /// - Returns: the rotated record, or `nil` if no key has that id.
    /// - Throws: `.keyExists` if a key has `newDigest` already.
    func rotateKey(id: KeyID, to newDigest: KeyDigest, previousUntil: Timestamp) async throws(TollgateError) -> APIKey?

    /// The key's counters and per-API counts as last recorded.
    func usage(id: KeyID) async throws(TollgateError) -> UsageSnapshot?

    /// Starts the key's counters and per-API counts again from zero, so that every limit
    /// has its full quota; fails with `.keyNotFound` if no key has that id. Units taken
    /// before the reset are never given back to the new counts.
    func resetUsage(id: KeyID) async throws(TollgateError)

    /// Stores every key `batches` hands over, skipping those whose id or digest is taken.
    /// The keys come a batch at a time so that a large import is never held whole; a store
    /// that has transactions stores them all in one, and nothing if `batches` throws.
    /// - Returns: how many were stored.
    func importKeys(_ batches: some KeyBatchSource) async throws(TollgateError) -> Int

    /// Keys in id order after `after`, at most `limit`, each with its usage, for exports
    /// that read a page at a time; a default implementation reads key by key.
    func usagePage(after: KeyID?, limit: Int) async throws(TollgateError) -> [KeyUsage]
}

extension KeyStore {
    /// Gives back an admitted request's units without waiting (see
    /// ``giveBack(_:decision:promise:)``).
    public func giveBack(_ request: AdmissionRequest, decision: AdmissionDecision) {
        giveBack(request, decision: decision, promise: nil)
    }

    /// Changes only the fields `edit` names (see ``editKey(id:_:ifVersion:)``).
    /// - Returns: the record as stored after the edit, or `nil` if no key has that id.
    public func editKey(id: KeyID, _ edit: KeyEdit) async throws(TollgateError) -> APIKey? {
        try await editKey(id: id, edit, ifVersion: nil)?.key
    }

    /// Revokes a key whatever its version (see ``revokeKey(id:at:ifVersion:)``).
    public func revokeKey(id: KeyID, at now: Timestamp) async throws(TollgateError) -> APIKey? {
        try await revokeKey(id: id, at: now, ifVersion: nil)
    }

    /// One ``createKey(_:)`` per key: for stores where a key costs no round trip.
    public func importKeys(_ batches: some KeyBatchSource) async throws(TollgateError) -> Int {
        var inserted = 0
        while let batch = try batches.next() {
            for key in batch {
                do {
                    try await createKey(key)
                    inserted += 1
                } catch  where error.code == .keyExists {
                    continue
                }
            }
        }
        return inserted
    }

    /// Stores many keys held in memory, skipping those whose id or digest is taken.
    /// - Returns: how many were stored.
    public func importKeys(_ keys: [APIKey]) async throws(TollgateError) -> Int {
        try await importKeys(KeyArrayBatches(keys))
    }

    /// Every key, in id order.
    public func allKeys() async throws(TollgateError) -> [APIKey] {
        var keys: [APIKey] = []
        while true {
            let page = try await listKeys(after: keys.last?.id, limit: 1000)
            keys += page
            if page.count < 1000 { return keys }
        }
    }
}

/// A key with its usage, as exports page through them.
public struct KeyUsage: Sendable {
    public var key: APIKey
    public var usage: UsageSnapshot?

    public init(key: APIKey, usage: UsageSnapshot?) {
        self.key = key
        self.usage = usage
    }
}

extension KeyStore {
    /// Keys in id order after `after`, at most `limit`, each with its usage: what a usage
    /// export reads a page at a time, so that it never holds every key in memory.
    ///
    /// Built from ``listKeys(after:limit:)`` and ``usage(id:)``; one read per key.
    public func usagePage(after: KeyID?, limit: Int) async throws(TollgateError) -> [KeyUsage] {
        var page: [KeyUsage] = []
        for key in try await listKeys(after: after, limit: limit) {
            page.append(KeyUsage(key: key, usage: try await usage(id: key.id)))
        }
        return page
    }
}
