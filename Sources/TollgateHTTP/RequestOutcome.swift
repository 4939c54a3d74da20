import TollgateCore

/// How a data-plane request ended, as metrics and the access log name it.
///
/// The names are the problem codes clients see (`invalid_api_key`, `quota_exceeded`), so
/// one word means one thing in a response, a log line and a dashboard. The set is closed,
/// which keeps the `outcome` label bounded.
public enum RequestOutcome: UInt8, Sendable, CaseIterable {
    case admitted
    case missingAPIKey
    case invalidAPIKey
    case keyRevoked
    case keyExpired
    case scopeDenied
    case quotaExceeded
    case notFound
    case methodNotAllowed
    case badPath
    case storeUnavailable
    case bodyNotAllowed
    case headersTooLarge
    case badRequest
    /// A proxied request's body above its route's limit.
    case bodyTooLarge
    /// The upstream could not be reached, or failed before its answer began.
    case upstreamUnavailable
    /// The upstream's answer did not begin in time.
    case upstreamTimeout
    /// A forward-auth question about a request no route serves.
    case unknownRoute
    /// A forward-auth question whose sources name different requests or methods.
    case ambiguousOriginalRequest
    /// A forward-auth question without its form's field, or with a method that is no token.
    case badOriginalRequest
    /// `/healthz` or `/readyz` on the data plane.
    case health
    /// An answer no outcome was set for (a new kind of answer that forgot to say).
    case other

    public var name: String {
        switch self {
        case .admitted: "admitted"
        case .health: "health"
        case .other: "other"
        case .missingAPIKey: Problem.missingAPIKey.rawValue
        case .invalidAPIKey: Problem.invalidAPIKey.rawValue
        case .keyRevoked: Problem.keyRevoked.rawValue
        case .keyExpired: Problem.keyExpired.rawValue
        case .scopeDenied: Problem.scopeDenied.rawValue
        case .quotaExceeded: Problem.quotaExceeded.rawValue
        case .notFound: Problem.notFound.rawValue
        case .methodNotAllowed: Problem.methodNotAllowed.rawValue
        case .badPath: Problem.badPath.rawValue
        case .storeUnavailable: Problem.storeUnavailable.rawValue
        case .bodyNotAllowed: Problem.bodyNotAllowed.rawValue
        case .headersTooLarge: Problem.headersTooLarge.rawValue
        case .badRequest: Problem.badRequest.rawValue
        case .bodyTooLarge: Problem.bodyTooLarge.rawValue
        case .upstreamUnavailable: Problem.upstreamUnavailable.rawValue
        case .upstreamTimeout: Problem.upstreamTimeout.rawValue
        case .unknownRoute: Problem.unknownRoute.rawValue
        case .ambiguousOriginalRequest: Problem.ambiguousOriginalRequest.rawValue
        case .badOriginalRequest: Problem.badOriginalRequest.rawValue
        }
    }

    init(_ problem: Problem) {
        switch problem {
        case .missingAPIKey: self = .missingAPIKey
        case .invalidAPIKey: self = .invalidAPIKey
        case .keyRevoked: self = .keyRevoked
        case .keyExpired: self = .keyExpired
        case .scopeDenied: self = .scopeDenied
        case .quotaExceeded: self = .quotaExceeded
        case .notFound: self = .notFound
        case .methodNotAllowed: self = .methodNotAllowed
        case .badPath: self = .badPath
        case .storeUnavailable: self = .storeUnavailable
        case .bodyNotAllowed: self = .bodyNotAllowed
        case .headersTooLarge: self = .headersTooLarge
        case .badRequest: self = .badRequest
        case .bodyTooLarge: self = .bodyTooLarge
        case .upstreamUnavailable: self = .upstreamUnavailable
        case .upstreamTimeout: self = .upstreamTimeout
        case .unknownRoute: self = .unknownRoute
        case .ambiguousOriginalRequest: self = .ambiguousOriginalRequest
        case .badOriginalRequest: self = .badOriginalRequest
        }
    }
}
