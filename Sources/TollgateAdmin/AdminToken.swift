import HTTPTypes
import Hummingbird
import NIOCore
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

/// Lets a request through only with `Authorization: Bearer TOKEN`; `401` otherwise.
struct AdminAuthMiddleware<Context: RequestContext>: RouterMiddleware {
    let token: AdminToken

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let field = request.headers[.authorization] else { throw AdminError.missingToken }
        let parts = field.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else { throw AdminError.missingToken }
        guard token.matches(parts[1].trimmingSpaces) else { throw AdminError.invalidToken }
        return try await next(request, context)
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
    public var coreContext: CoreRequestContextStorage
    public let remoteAddress: SocketAddress?

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        remoteAddress = source.channel.remoteAddress
    }

    /// Admin bodies are small JSON objects.
    public var maxUploadSize: Int { AdminBody.maximumSize }
}
