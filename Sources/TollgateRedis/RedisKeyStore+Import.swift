import NIOCore
import Synchronization
import TollgateCore
import TollgateRESP

extension RedisKeyStore {
    /// Creates every key with the same script as ``createKey(_:)`` (one atomic step per key:
    /// skipped if its digest or id is taken), but pipelined: a whole batch of script calls is
    /// in flight on the pool's connections at once, and the next batch is decoded while
    /// Redis runs this one, instead of one round trip per key.
    ///
    /// Redis has no transaction that could take a million keys, so a failure part way leaves
    /// the keys stored so far; running the import again completes it (those are skipped).
    /// The CLI checks the whole file before it calls this.
    public func importKeys(_ batches: some KeyBatchSource) async throws(TollgateError) -> Int {
        // Loaded once, so that EVALSHA never answers NOSCRIPT for a whole batch (each of
        // which would then send the script's source).
        _ = try await importCommand(RESPCommand("SCRIPT", "LOAD", .string(RedisScripts.create.source)))
        var inserted = 0
        var inFlight: [(digest: KeyDigest, reply: EventLoopFuture<RESPValue>)] = []
        while let batch = try batches.next() {
            let sent = batch.map { key in
                (
                    key.digest,
                    client.evalScript(
                        RedisScripts.create,
                        keys: [names.digest(key.digest), names.record(key.id), names.ids, names.changes].map { .string($0) },
                        args: ([key.id.rawValue] + RedisRecord.fields(key)).map { .string($0) }
                    )
                )
            }
            inserted += try await created(inFlight)
            inFlight = sent
        }
        inserted += try await created(inFlight)
        return inserted
    }

    /// Waits for a batch's replies; counts the keys created and forgets that their digests
    /// were unknown, so that they work here at once.
    private func created(_ replies: [(digest: KeyDigest, reply: EventLoopFuture<RESPValue>)]) async throws(TollgateError) -> Int {
        var created = 0
        var failure: TollgateError?
        for (digest, reply) in replies {
            // Every reply is awaited, even after a failure, so that none is left behind.
            do {
                let value = try await reply.get()
                if let message = value.errorMessage {
                    failure = failure ?? TollgateError(.storeUnavailable, "Redis refused an import: \(message)")
                } else if value.int == 1 {
                    created += 1
                    cache.withLock { $0.forgetUnknown(digest) }
                }
            } catch {
                let message = (error as? RESPError)?.message ?? "\(error)"
                failure = failure ?? TollgateError(.storeUnavailable, "Redis failed an import: \(message)")
            }
        }
        if let failure { throw failure }
        return created
    }

    private func importCommand(_ command: RESPCommand) async throws(TollgateError) -> RESPValue {
        let reply: RESPValue
        do {
            reply = try await client.execute(command)
        } catch {
            throw TollgateError(.storeUnavailable, "Redis failed '\(command.name)': \(error.message)")
        }
        if let message = reply.errorMessage { throw TollgateError(.storeUnavailable, "Redis refused '\(command.name)': \(message)") }
        return reply
    }
}
