import Crypto
import NIOCore

/// A Lua script identified by the SHA-1 of its source, computed locally.
///
/// Knowing the hash up front lets every call send the short EVALSHA and only send the
/// source after a `NOSCRIPT` reply, with no SCRIPT LOAD round trip at startup.
public struct RESPScript: Sendable, Hashable {
    /// The Lua source.
    public let source: String
    /// Lowercase hex SHA-1 of `source`, as Redis computes it.
    public let sha1: String

    /// Hashes `source` once, here, so calls never pay for it.
    public init(_ source: String) {
        self.source = source
        self.sha1 = Insecure.SHA1.hash(data: Array(source.utf8)).map { byte in
            let hex = String(byte, radix: 16)
            return byte < 0x10 ? "0" + hex : hex
        }.joined()
    }

    /// EVALSHA, then EVAL only when the server answers `NOSCRIPT` (script cache flushed,
    /// failover, restart), each sent with `send`.
    func run(
        keys: [RESPArgument], args: [RESPArgument], send: @escaping @Sendable (RESPCommand) -> EventLoopFuture<RESPValue>
    ) -> EventLoopFuture<RESPValue> {
        let first = send(self.evalSHACommand(keys: keys, args: args))
        let source = self
        return first.flatMapError { error in
            if let e = error as? RESPError, e.serverErrorPrefix == "NOSCRIPT" {
                return send(source.evalCommand(keys: keys, args: args))
            }
            return first.eventLoop.makeFailedFuture(error)
        }
    }

    /// The EVALSHA command, for callers that pipeline a script with other commands.
    public func evalSHACommand(keys: [RESPArgument], args: [RESPArgument]) -> RESPCommand {
        Self.command("EVALSHA", .string(self.sha1), keys: keys, args: args)
    }

    /// The EVAL command (the source), to send after a `NOSCRIPT` reply.
    public func evalCommand(keys: [RESPArgument], args: [RESPArgument]) -> RESPCommand {
        Self.command("EVAL", .string(self.source), keys: keys, args: args)
    }

    private static func command(_ name: String, _ body: RESPArgument, keys: [RESPArgument], args: [RESPArgument]) -> RESPCommand {
        var arguments: [RESPArgument] = [body, .integer(keys.count)]
        arguments.reserveCapacity(2 + keys.count + args.count)
        arguments.append(contentsOf: keys)
        arguments.append(contentsOf: args)
        return RESPCommand(name, arguments: arguments)
    }
}
