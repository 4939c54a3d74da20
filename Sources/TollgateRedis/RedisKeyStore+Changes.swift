import Logging
import Synchronization
import TollgateCore
import TollgateRESP

extension RedisKeyStore {
    // MARK: Change stream

    /// The id of the stream's last entry, "0-0" for an empty stream, `nil` if Redis did not
    /// answer.
    func streamEnd() async -> String? {
        guard let reply = try? await client.execute(RESPCommand("XREVRANGE", .string(names.changes), "+", "-", "COUNT", 1)),
            let entries = reply.array
        else { return nil }
        return entries.first?.array?.first?.string ?? "0-0"
    }

    /// Reads the changes after `after` and refreshes the records this instance holds.
    ///
    /// The stream is capped (about 100,000 entries): if entries this instance had not read
    /// were trimmed away (it lagged behind a bulk import, say), a revocation among them would
    /// be missed, so the whole cache is dropped and every record read afresh on next use.
    /// While it lags (a full page), only the records it holds are read again.
    /// - Returns: the last change read.
    func followChanges(after: String) async -> String? {
        if after != "0-0",
            let first = try? await client.execute(RESPCommand("XRANGE", .string(names.changes), "-", "+", "COUNT", 1)).array?
                .first?.array?.first?.string,
            Self.streamID(first, isAfter: after)
        {
            logger.warning("the change stream was trimmed past the last change read; reading every key record afresh")
            cache.withLock { $0.removeAll() }
        }
        guard
            let entries = try? await client.execute(
                RESPCommand("XRANGE", .string(names.changes), .string("(" + after), "+", "COUNT", 1000)
            ).array
        else { return nil }
        let lagging = entries.count == 1000
        var last: String?
        for entry in entries {
            guard let parts = entry.array, parts.count == 2, let entryID = parts[0].string else { continue }
            last = entryID
            let fields = parts[1].array ?? []
            guard fields.count >= 2, let keyID = fields[1].string else { continue }
            let id = KeyID(rawValue: keyID)
            if lagging && !cache.withLock({ $0.holds(id) }) { continue }
            await refresh(id)
        }
        return last
    }

    /// Whether stream id `a` (`ms-seq`) comes after `b`. When the stream's first entry comes
    /// after the last one read, that one was trimmed, and perhaps unread ones with it (at
    /// worst a needless reload of the cache, never a missed change).
    static func streamID(_ a: String, isAfter b: String) -> Bool {
        func parts(_ id: String) -> (UInt64, UInt64)? {
            let pieces = id.split(separator: "-")
            guard pieces.count == 2, let ms = UInt64(pieces[0]), let seq = UInt64(pieces[1]) else { return nil }
            return (ms, seq)
        }
        guard let x = parts(a), let y = parts(b) else { return false }
        return x > y
    }

    /// Reads a record again and takes it if this instance holds the key, and forgets the
    /// digest as unknown (a new key must work at once).
    private func refresh(_ id: KeyID) async {
        guard let key = try? await versionedKey(id: id) else { return }
        cache.withLock { cache in cache.refresh(key) }
    }
}
