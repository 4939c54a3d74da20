import Logging
import NIOCore
import NIOPosix
import Synchronization
import TollgateCore
import TollgateRESP

extension RedisKeyStore {
    /// Creates every key with the same script as ``createKey(_:)`` (one atomic step per key:
    /// skipped if its digest or id is taken), but pipelined: calls go out in groups of
    /// ``importGroupSize`` without waiting for replies, with up to ``importGroupsInFlight``
    /// groups outstanding, instead of one round trip per key. The window is bounded because
    /// every command must be answered within the command timeout of being sent, or the
    /// import fails: the CLI gives an import a longer one than the data plane's.
    ///
    /// Redis has no transaction that could take a million keys, so a failure part way leaves
    /// the keys stored so far; the error says so, and that running the import again
    /// completes it (those are skipped). The CLI checks the whole file before it calls this.
    /// With ``Configuration/durableWrites``, Redis is asked before and after whether it
    /// fsyncs every write before answering (then every key counted here is on disk).
    public func importKeys(_ batches: some KeyBatchSource) async throws(TollgateError) -> Int {
        if configuration.durableWrites { try await checkDurability() }
        // Loaded once, so that EVALSHA never answers NOSCRIPT (each of which would then
        // send the script's source).
        _ = try await importCommand(RESPCommand("SCRIPT", "LOAD", .string(RedisScripts.create.source)))
        var inserted = 0
        var inFlight: [ImportGroup] = []
        var failure: TollgateError?
        while failure == nil, let batch = try batches.next() {
            var start = batch.startIndex
            while start < batch.endIndex {
                let end = min(start + Self.importGroupSize, batch.endIndex)
                inFlight.append(sendGroup(batch[start..<end]))
                start = end
                if inFlight.count >= Self.importGroupsInFlight {
                    do throws(TollgateError) { inserted += try await created(inFlight.removeFirst()) } catch { failure = error }
                    if failure != nil { break }
                }
            }
        }
        // Every reply is awaited, even after a failure, so that none is left behind.
        for group in inFlight {
            do throws(TollgateError) { inserted += try await created(group) } catch { failure = failure ?? error }
        }
        if let failure {
            throw TollgateError(
                failure.code,
                "\(failure.message); the import is partly applied (\(inserted) keys were stored before it failed, perhaps a few more): run the same import again to finish it, it skips the keys already stored"
            )
        }
        if configuration.durableWrites {
            do throws(TollgateError) { try await checkDurability() } catch {
                throw TollgateError(
                    .storeUnavailable, "the \(inserted) keys were imported, but Redis may lose them in a crash: \(error.message)")
            }
        }
        return inserted
    }

    /// Script calls in one group, sent without waiting.
    static let importGroupSize = 256
    /// Groups whose replies may be outstanding at once.
    static let importGroupsInFlight = 4

    private struct ImportGroup {
        var digests: [KeyDigest]
        var replies: EventLoopFuture<[Result<RESPValue, any Error>]>
    }

    private func sendGroup(_ keys: ArraySlice<APIKey>) -> ImportGroup {
        let replies = keys.map { key in
            client.evalScript(
                RedisScripts.create,
                keys: [names.digest(key.digest), names.record(key.id), names.ids, names.changes].map { .string($0) },
                args: ([key.id.rawValue] + RedisRecord.fields(key)).map { .string($0) }
            )
        }
        let eventLoop = replies.first?.eventLoop ?? MultiThreadedEventLoopGroup.singleton.any()
        return ImportGroup(digests: keys.map(\.digest), replies: EventLoopFuture.whenAllComplete(replies, on: eventLoop))
    }

    /// Waits for a group's replies; counts the keys created and forgets that their digests
    /// were unknown, so that they work here at once.
    private func created(_ group: ImportGroup) async throws(TollgateError) -> Int {
        let results: [Result<RESPValue, any Error>]
        do {
            results = try await group.replies.get()
        } catch {
            throw TollgateError(.storeUnavailable, "Redis failed an import: \(error)")
        }
        var created = 0
        var failure: TollgateError?
        for (digest, result) in zip(group.digests, results) {
            switch result {
            case .success(let value):
                if let message = value.errorMessage {
                    failure = failure ?? TollgateError(.storeUnavailable, "Redis refused an import: \(message)")
                } else if value.int == 1 {
                    created += 1
                    cache.withLock { $0.forgetUnknown(digest) }
                }
            case .failure(let error):
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
