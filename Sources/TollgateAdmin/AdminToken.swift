import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import Synchronization
import TollgateCore

/// The bearer token that opens `/admin/v1`, held only as its SHA-256 digest so that a
/// comparison takes the same time whatever the candidate's length or content.
public struct AdminToken: Sendable {
    private let digest: KeyDigest

    /// The fewest bytes of a token: the admin API creates keys and reads every key's usage,
    /// and a short token (a word, a date) falls to guessing over the network.
    public static let minimumLength = 16

    /// The most bytes of a token: it travels in one header field.
    public static let maximumLength = 4096

    /// A token from the environment, a file or argv; refused when shorter than
    /// ``minimumLength`` or not one line of visible ASCII, so that a stray newline read from a
    /// file cannot end up in it.
    public init(_ text: String) throws(TollgateError) {
        guard (Self.minimumLength...Self.maximumLength).contains(text.utf8.count),
            text.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F })
        else {
            throw TollgateError(
                .invalidInput,
                "the admin token must be \(Self.minimumLength) to \(Self.maximumLength) visible ASCII characters without spaces: generate one with 'openssl rand -hex 32'"
            )
        }
        digest = KeyDigest(secret: text)
    }

    /// Whether `candidate` is the token, in time independent of where they differ.
    public func matches(_ candidate: some StringProtocol) -> Bool {
        let other = KeyDigest(secret: candidate)
        let difference =
            (digest.words.0 ^ other.words.0) | (digest.words.1 ^ other.words.1) | (digest.words.2 ^ other.words.2)
            | (digest.words.3 ^ other.words.3)
        return difference == 0
    }
}

/// Lets a request through only with `Authorization: Bearer TOKEN`; `401` otherwise, and
/// each refusal is reported to `refusals` (logged, never with what was sent).
struct AdminAuthMiddleware: RouterMiddleware {
    typealias Context = AdminRequestContext
    let token: AdminToken
    let refusals: RefusedLogins

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            try check(request)
        } catch {
            refusals.record(error, path: request.uri.path, remote: context.remote, logger: context.logger)
            throw error
        }
        return try await next(request, context)
    }

    private func check(_ request: Request) throws(AdminError) {
        guard let field = request.headers[.authorization] else { throw AdminError.missingToken }
        let parts = field.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else { throw AdminError.missingToken }
        guard token.matches(parts[1].trimmingSpaces) else { throw AdminError.invalidToken }
    }
}

/// Logs requests the admin API refused for their token, at most one line per ``interval``:
/// a guessing attack is seen (with the peer's address and how many were refused since the
/// last line) without filling the log. The token sent is never logged, nor compared beyond
/// the constant-time check.
public final class RefusedLogins: Sendable {
    /// The least time between two lines.
    public static let interval: Int64 = 10_000

    private let clock: any WallClock
    private let state = Mutex<(lastLine: Timestamp?, unlogged: Int)>((nil, 0))

    public init(clock: some WallClock) {
        self.clock = clock
    }

    func record(_ error: AdminError, path: String, remote: String, logger: Logger) {
        let now = clock.now
        let unlogged: Int? = state.withLock { state in
            if let last = state.lastLine, now.millisecondsSinceEpoch - last.millisecondsSinceEpoch < Self.interval {
                state.unlogged += 1
                return nil
            }
            defer { state = (now, 0) }
            return state.unlogged
        }
        guard let unlogged else { return }
        logger.warning(
            "admin API request refused: no valid admin token",
            metadata: [
                "remote": "\(remote)", "code": "\(error.code)", "path": "\(TollgateError.excerpt(path, limit: 200))",
                "refused_since_last_line": "\(unlogged)",
            ])
    }
}

extension Substring {
    fileprivate var trimmingSpaces: Substring {
        var text = self
        while text.first == " " { text.removeFirst() }
        while text.last == " " { text.removeLast() }
        return text
    }
}

/// The control plane's request context: Hummingbird's basics plus the peer's address,
/// which the log lines of changes name (the admin token carries no identity).
public struct AdminRequestContext: RequestContext, RemoteAddressRequestContext {
    /// The peer's address for log lines, or `unknown`.
    public var remote: String { remoteAddress.map { "\($0)" } ?? "unknown" }

    public var coreContext: CoreRequestContextStorage
    public let remoteAddress: SocketAddress?

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        remoteAddress = source.channel.remoteAddress
    }

    /// Admin bodies are small JSON objects.
    public var maxUploadSize: Int { AdminBody.maximumSize }
}
