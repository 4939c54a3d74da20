import Logging
import Synchronization
import TollgateCore
import TollgateRESP

extension RedisKeyStore {
    // MARK: Durable control-plane writes

    /// Runs a control-plane write (create, edit, rotate, revoke, usage reset). With
    /// ``Configuration/durableWrites`` the script and the question whether Redis fsyncs
    /// every write before it answers go in one round trip on one connection: when Redis
    /// says yes, the script's change was on disk before its reply left, so the caller may
    /// acknowledge it (a revocation survives `kill -9`). When it says no (someone changed
    /// the setting), the change was made but the caller is told it may not survive a crash.
    ///
    /// Redis 7.2 offers `WAITAOF`, which would let `appendfsync everysec` wait for one
    /// write; Redis 7.0 (Debian 12) has no such command, and the tests run on 7.0, so only
    /// the setting that makes every write durable is accepted.
    func write(_ script: RESPScript, keys: [String], args: [String]) async throws(TollgateError) -> RESPValue {
        guard configuration.durableWrites else { return try await run(script, keys: keys, args: args) }
        let k = keys.map { RESPArgument.string($0) }
        let a = args.map { RESPArgument.string($0) }
        var replies = await client.executePipeline([script.evalSHACommand(keys: k, args: a), Self.durabilityQuery])
        if replies.count == 2, case .failure(let error) = replies[0], error.serverErrorPrefix == "NOSCRIPT" {
            replies = await client.executePipeline([script.evalCommand(keys: k, args: a), Self.durabilityQuery])
        }
        guard replies.count == 2 else { throw TollgateError(.storeUnavailable, "Redis failed a script: no reply") }
        let reply: RESPValue
        switch replies[0] {
        case .success(let value): reply = value
        case .failure(let error): throw TollgateError(.storeUnavailable, "Redis failed a script: \(error.message)")
        }
        if let problem = Self.durabilityProblem(replies[1]) {
            throw TollgateError(.storeUnavailable, "the change was made, but Redis may lose it in a crash: \(problem)")
        }
        return reply
    }

    /// Throws unless Redis appends and fsyncs every write before it answers; `connect()`
    /// calls it when ``Configuration/durableWrites`` is set, and an import before and after.
    func checkDurability() async throws(TollgateError) {
        let reply: Result<RESPValue, RESPError>
        do {
            reply = .success(try await client.execute(Self.durabilityQuery))
        } catch {
            reply = .failure(error)
        }
        if let problem = Self.durabilityProblem(reply) { throw TollgateError(.invalidStoreURL, problem) }
    }

    /// The three settings that decide whether an acknowledged write is on disk.
    static let durabilityQuery = RESPCommand("CONFIG", "GET", "appendonly", "appendfsync", "no-appendfsync-on-rewrite")

    /// What keeps Redis's answer from meaning "on disk", as a sentence that says what to do;
    /// `nil` when every write is fsync'd before Redis answers.
    static func durabilityProblem(_ reply: Result<RESPValue, RESPError>) -> String? {
        let settings: [String: String]
        switch reply {
        case .success(let value) where value.errorMessage == nil:
            settings = Dictionary(RedisRecord.pairs(value), uniquingKeysWith: { a, _ in a })
        case .success(let value):
            return durabilityUnknown(value.errorMessage ?? "")
        case .failure(let error):
            if error.code == .serverError || error.code == .authenticationFailed { return durabilityUnknown(error.message) }
            return "Redis did not answer whether it keeps writes on disk (\(error.message)): try again"
        }
        let appendonly = settings["appendonly"] ?? "?"
        let appendfsync = settings["appendfsync"] ?? "?"
        let onRewrite = settings["no-appendfsync-on-rewrite"] ?? "?"
        if appendonly == "yes" && appendfsync == "always" && onRewrite == "no" { return nil }
        return
            "durable_writes=1 needs Redis to fsync every write before it answers, but it runs with appendonly \(appendonly), appendfsync \(appendfsync), no-appendfsync-on-rewrite \(onRewrite): start it with --appendonly yes --appendfsync always (and no-appendfsync-on-rewrite no), or leave out durable_writes=1 and accept what docs/redis.md says each persistence setting may lose"
    }

    private static func durabilityUnknown(_ message: String) -> String {
        "durable_writes=1 must ask Redis how it keeps writes (CONFIG GET), and Redis refused (\(message)): allow CONFIG GET to this user (ACL '+config|get'), or leave out durable_writes=1"
    }
}
