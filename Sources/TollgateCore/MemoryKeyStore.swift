import NIOCore
import ServiceLifecycle

/// A store that keeps everything in the ledger and nothing on disk: for tests and demos.
public struct MemoryKeyStore: KeyStore {
    let ledger = QuotaLedger<NoJournal>()

    public init() {}

    public func run() async throws {
        try? await gracefulShutdown()
    }

    public func admit(_ request: AdmissionRequest, promise: EventLoopPromise<AdmissionDecision>) {
        switch ledger.admit(request, promise: promise) {
        case .decided(let decision): promise.succeed(decision)
        case .awaitingCommit: break  // never: `NoJournal` answers every decision at once
        case .unknownKey:
            ledger.rememberUnknown(request.digest, now: request.now)
            promise.succeed(.invalidKey)
        }
    }

    public func giveBack(_ request: AdmissionRequest, decision: AdmissionDecision, promise: EventLoopPromise<Bool>?) {
        // The memory journal gives back at once: nothing is ever queued.
        guard case .done(let given) = ledger.giveBack(request, decision: decision, promise: promise) else { return }
        promise?.succeed(given)
    }

    public func isReady() async -> Bool { true }

    public func createKey(_ key: APIKey) async throws(TollgateError) {
        guard ledger.load(key) else {
            throw TollgateError(.keyExists, "a key with that secret or id exists already: leave out --key to generate a new secret")
        }
    }

    public func key(id: KeyID) async throws(TollgateError) -> APIKey? {
        ledger.snapshot(of: id)?.key
    }

    public func key(digest: KeyDigest) async throws(TollgateError) -> APIKey? {
        ledger.snapshot(ofDigest: digest)
    }

    public func listKeys(after: KeyID?, limit: Int) async throws(TollgateError) -> [APIKey] {
        Array(ledger.keys.lazy.filter { after == nil || $0.id > after! }.prefix(limit))
    }

    public func updateKey(_ key: APIKey, keepingRevocation: Bool) async throws(TollgateError) {
        // The ledger finds keys by digest; an update names its key by id.
        guard let held = ledger.snapshot(of: key.id), held.key.digest == key.digest,
            ledger.refresh(key, version: nil, keepingRevocation: keepingRevocation)
        else {
            throw TollgateError(.keyNotFound, "no key has id \(key.id)")
        }
    }

    public func versionedKey(id: KeyID) async throws(TollgateError) -> VersionedKey? {
        ledger.versioned(id: id)
    }

    public func editKey(id: KeyID, _ edit: KeyEdit, ifVersion: Int64?) async throws(TollgateError) -> VersionedKey? {
        try ledger.edit(id: id, edit, ifVersion: ifVersion)
    }

    public func revokeKey(id: KeyID, at now: Timestamp, ifVersion: Int64?) async throws(TollgateError) -> APIKey? {
        try ledger.revoke(id: id, at: now, ifVersion: ifVersion)
    }

    public func rotateKey(id: KeyID, to newDigest: KeyDigest, previousUntil: Timestamp) async throws(TollgateError) -> APIKey? {
        try ledger.rotate(id: id, to: newDigest, previousUntil: previousUntil)
    }

    public func usage(id: KeyID) async throws(TollgateError) -> UsageSnapshot? {
        ledger.snapshot(of: id)?.usage
    }

    public func resetUsage(id: KeyID) async throws(TollgateError) {
        guard ledger.resetUsage(id: id) else { throw TollgateError(.keyNotFound, "no key has id \(id)") }
    }
}
