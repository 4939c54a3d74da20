import Logging
import Synchronization
import TollgateCore
import TollgateRESP

extension RedisKeyStore {
    // MARK: Control plane

    public func createKey(_ key: APIKey) async throws(TollgateError) {
        let created = try await write(
            RedisScripts.create,
            keys: [names.digest(key.digest), names.record(key.id), names.ids, names.changes],
            args: [key.id.rawValue] + RedisRecord.fields(key)
        )
        guard created.int == 1 else {
            throw TollgateError(.keyExists, "a key with that secret or id exists already: leave out --key to generate a new secret")
        }
        cache.withLock { $0.forgetUnknown(key.digest) }
    }

    public func key(id: KeyID) async throws(TollgateError) -> APIKey? {
        try await record(id: id)
    }

    /// The version is the record's `version` field, which every script that changes the
    /// record moves on.
    public func versionedKey(id: KeyID) async throws(TollgateError) -> VersionedKey? {
        let reply = try await execute(RESPCommand("HGETALL", .string(names.record(id))))
        if RedisRecord.pairs(reply).isEmpty { return nil }
        return VersionedKey(key: try RedisRecord.decode(reply), version: RedisRecord.version(reply))
    }

    public func key(digest: KeyDigest) async throws(TollgateError) -> APIKey? {
        guard let id = try await execute(RESPCommand("GET", .string(names.digest(digest)))).string else { return nil }
        return try await record(id: KeyID(rawValue: id))
    }

    public func listKeys(after: KeyID?, limit: Int) async throws(TollgateError) -> [APIKey] {
        let start = after.map { "(" + $0.rawValue } ?? "-"
        let ids =
            try await execute(
                RESPCommand("ZRANGE", .string(names.ids), .string(start), "+", "BYLEX", "LIMIT", 0, .integer(limit))
            ).array ?? []
        var keys: [APIKey] = []
        for id in ids.compactMap(\.string) {
            if let key = try await record(id: KeyID(rawValue: id)) { keys.append(key) }
        }
        return keys
    }

    public func updateKey(_ key: APIKey, keepingRevocation: Bool) async throws(TollgateError) {
        let fields = RedisRecord.fields(key)
        let updated = try await write(
            RedisScripts.update,
            keys: [names.record(key.id), names.changes, names.apiUsage(key.id)],
            args: [key.id.rawValue, fields[1], fields[2], fields[3], fields[5], fields[6], keepingRevocation ? "1" : "0"]
        )
        guard updated.int == 1 else { throw TollgateError(.keyNotFound, "no key has id \(key.id)") }
        if let stored = try await versionedKey(id: key.id) { cache.withLock { $0.refresh(stored) } }
    }

    /// One script sets the fields given and returns the record as it then is, so that the
    /// cache takes exactly what was stored; other instances follow the change stream.
    public func editKey(id: KeyID, _ edit: KeyEdit, ifVersion: Int64?) async throws(TollgateError) -> VersionedKey? {
        var pairs: [String] = []
        if let name = edit.name { pairs += ["name", name] }
        if let scopes = edit.scopes { pairs += ["scopes", scopes.storedText] }
        if let limits = edit.limits { pairs += ["limits", limits.storedText] }
        if let expiry = edit.expiry { pairs += ["expires_at", expiry.instant.map { String($0.millisecondsSinceEpoch) } ?? ""] }
        let reply = try await write(
            RedisScripts.edit,
            keys: [names.record(id), names.changes, names.apiUsage(id)],
            args: [id.rawValue, ifVersion.map(String.init) ?? ""] + pairs
        )
        if reply.int == -1 { throw TollgateError.versionMismatch(id) }
        guard reply.int != 0, !RedisRecord.pairs(reply).isEmpty else { return nil }
        let key = VersionedKey(key: try RedisRecord.decode(reply), version: RedisRecord.version(reply))
        cache.withLock { $0.refresh(key) }
        return key
    }

    /// The Lua script moves the digests in one step; it names the index of the digest it
    /// drops in KEYS (read here first), and a rotation racing in between is retried.
    public func rotateKey(id: KeyID, to newDigest: KeyDigest, previousUntil: Timestamp) async throws(TollgateError) -> APIKey? {
        for _ in 0..<3 {
            guard let current = try await record(id: id) else { return nil }
            let dropped = current.previousDigest
            let result = try await write(
                RedisScripts.rotate,
                keys: [names.record(id), names.digest(newDigest), dropped.map(names.digest) ?? names.record(id), names.changes],
                args: [id.rawValue, newDigest.hex, String(previousUntil.millisecondsSinceEpoch), dropped?.hex ?? ""]
            )
            switch result.int {
            case 1:
                guard let key = try await versionedKey(id: id) else { return nil }
                cache.withLock { $0.refresh(key) }
                return key.key
            case 0: return nil
            case -1: throw TollgateError(.keyExists, "a key with that secret exists already")
            default: continue
            }
        }
        throw TollgateError(.storeUnavailable, "the key \(id) kept changing while it was rotated: try again")
    }

    public func revokeKey(id: KeyID, at now: Timestamp, ifVersion: Int64?) async throws(TollgateError) -> APIKey? {
        let revoked = try await write(
            RedisScripts.revoke,
            keys: [names.record(id), names.changes],
            args: [id.rawValue, String(now.millisecondsSinceEpoch), ifVersion.map(String.init) ?? ""]
        )
        if revoked.int == -1 { throw TollgateError.versionMismatch(id) }
        guard revoked.int == 1, let key = try await versionedKey(id: id) else { return nil }
        cache.withLock { $0.refresh(key) }
        return key.key
    }

    /// Deletes the key's counters and per-API counts and moves its usage epoch on, in one
    /// script (they share a slot).
    public func resetUsage(id: KeyID) async throws(TollgateError) {
        guard let key = try await record(id: id) else { throw TollgateError(.keyNotFound, "no key has id \(id)") }
        let counters = Set(key.limits.map(\.counterID)).map { names.counter(id, $0) }
        _ = try await write(RedisScripts.resetUsage, keys: [names.apiUsage(id)] + counters, args: [])
    }

    public func usage(id: KeyID) async throws(TollgateError) -> UsageSnapshot? {
        guard let key = try await record(id: id) else { return nil }
        var counters: [String: UsageCounter] = [:]
        for counterID in Set(key.limits.map(\.counterID)) {
            let values = try await execute(RESPCommand("HMGET", .string(names.counter(id, counterID)), "w", "n")).array ?? []
            if values.count == 2, let start = values[0].string.flatMap({ Int64($0) }), let used = values[1].string.flatMap({ Int64($0) }) {
                counters[counterID] = UsageCounter(windowStart: start, used: used)
            }
        }
        var apis: [String: APIUsage] = [:]
        let reply = try await execute(RESPCommand("HGETALL", .string(names.apiUsage(id))))
        for (field, value) in RedisRecord.pairs(reply) {
            guard let colon = field.firstIndex(of: ":"), let count = Int64(value) else { continue }
            let api = String(field[field.index(after: colon)...])
            switch field[..<colon] {
            case "admitted": apis[api, default: APIUsage()].admitted = count
            case "scope_denied": apis[api, default: APIUsage()].scopeDenied = count
            case "quota_exceeded": apis[api, default: APIUsage()].quotaExceeded = count
            case "key_revoked": apis[api, default: APIUsage()].keyRevoked = count
            case "key_expired": apis[api, default: APIUsage()].keyExpired = count
            default: continue
            }
        }
        return UsageSnapshot(keyID: id, counters: counters, apis: apis)
    }

    // MARK: Helpers

    func record(id: KeyID) async throws(TollgateError) -> APIKey? {
        try await versionedKey(id: id)?.key
    }

    func execute(_ command: RESPCommand) async throws(TollgateError) -> RESPValue {
        let reply: RESPValue
        do {
            reply = try await client.execute(command)
        } catch {
            throw TollgateError(.storeUnavailable, "Redis failed '\(command.name)': \(error.message)")
        }
        if let message = reply.errorMessage {
            throw TollgateError(.storeUnavailable, "Redis refused '\(command.name)': \(message)")
        }
        return reply
    }

    func run(_ script: RESPScript, keys: [String], args: [String]) async throws(TollgateError) -> RESPValue {
        do {
            return try await client.executeScript(script, keys: keys.map { .string($0) }, args: args.map { .string($0) })
        } catch {
            throw TollgateError(.storeUnavailable, "Redis failed a script: \(error.message)")
        }
    }
}
