import NIOCore
import NIOHTTP1
import TollgateCore

/// Every refusal the data plane can give, with its status and problem code.
///
/// This is the one place where outcomes become HTTP: store decisions, routing and parse
/// errors all land here, and each maps to a body prebuilt at start-up.
public enum Problem: String, Sendable, CaseIterable {
    case missingAPIKey = "missing_api_key"
    case invalidAPIKey = "invalid_api_key"
    case keyRevoked = "key_revoked"
    case keyExpired = "key_expired"
    case scopeDenied = "scope_denied"
    case quotaExceeded = "quota_exceeded"
    case notFound = "not_found"
    case methodNotAllowed = "method_not_allowed"
    case badPath = "bad_path"
    case storeUnavailable = "store_unavailable"
    case bodyNotAllowed = "body_not_allowed"
    case headersTooLarge = "headers_too_large"
    case badRequest = "bad_request"
    case bodyTooLarge = "body_too_large"
    case upstreamUnavailable = "upstream_unavailable"
    case upstreamTimeout = "upstream_timeout"
    case unknownRoute = "unknown_route"
    case ambiguousOriginalRequest = "ambiguous_original_request"
    case badOriginalRequest = "bad_original_request"

    public var status: HTTPResponseStatus {
        switch self {
        case .missingAPIKey, .invalidAPIKey, .keyRevoked, .keyExpired: .unauthorized
        case .scopeDenied: .forbidden
        case .quotaExceeded: .tooManyRequests
        case .notFound, .unknownRoute: .notFound
        case .methodNotAllowed: .methodNotAllowed
        case .badPath, .badRequest, .ambiguousOriginalRequest, .badOriginalRequest: .badRequest
        case .storeUnavailable: .serviceUnavailable
        case .bodyNotAllowed, .bodyTooLarge: .payloadTooLarge
        case .upstreamUnavailable: .badGateway
        case .upstreamTimeout: .gatewayTimeout
        case .headersTooLarge: .requestHeaderFieldsTooLarge
        }
    }

    var detail: String {
        switch self {
        case .missingAPIKey: "Send an API key in the 'Authorization: Bearer KEY', 'X-API-Key: KEY' or 'token: KEY' header."
        case .invalidAPIKey: "The API key is not valid. Check that it was copied whole."
        case .keyRevoked: "The API key has been revoked. Ask its issuer for a new one."
        case .keyExpired: "The API key has expired. Ask its issuer for a new one."
        case .scopeDenied: "The API key is valid but was not granted this API."
        case .quotaExceeded:
            "A quota of the API key is spent; 'violated-policies' names it and Retry-After says in how many seconds it resets."
        case .notFound: "No API is served at this path."
        case .methodNotAllowed: "This API does not answer this method; 'Allow' lists those it does."
        case .badPath:
            "The path has a dot segment (also one hidden behind ';' parameters), an encoded slash, dot or backslash, an empty segment or a byte that paths may not hold."
        case .storeUnavailable: "The key store cannot be reached, so the request was not served. Try again shortly."
        case .bodyNotAllowed: "Requests to this API carry no body."
        case .bodyTooLarge: "The request body is larger than this API accepts."
        case .upstreamUnavailable: "The API's server cannot be reached. Try again shortly; the request was counted."
        case .upstreamTimeout: "The API's server did not answer in time. The request was counted."
        case .unknownRoute:
            "Forward-auth: the original request (X-Original-URI, X-Forwarded-Uri or the path below the auth path) is for no API this gateway knows."
        case .ambiguousOriginalRequest:
            "Forward-auth: the request names its original request or method in more than one way (X-Original-URI, X-Forwarded-Uri, the path below the auth path; X-Original-Method, X-Forwarded-Method), and they differ. Use your proxy's own form: /auth/nginx, /auth/traefik, /auth/caddy or /auth/envoy."
        case .badOriginalRequest:
            "Forward-auth: the original request is missing or not valid: /auth/nginx needs X-Original-URI, /auth/traefik and /auth/caddy X-Forwarded-Uri, and a method must be an HTTP token."
        case .headersTooLarge: "The request's header fields are too large."
        case .badRequest: "The request is not valid HTTP/1.1."
        }
    }

    /// The detail of an upstream failure on a route with `give_back_on_5xx`, where the
    /// request's unit is given back rather than kept.
    var givenBackDetail: String? {
        switch self {
        case .upstreamUnavailable: "The API's server cannot be reached. Try again shortly; the request's unit is given back."
        case .upstreamTimeout: "The API's server did not answer in time. The request's unit is given back."
        default: nil
        }
    }

    /// The body of ``givenBackDetail``, for the problems that have one.
    var prebuiltGivenBackBody: String? { givenBackDetail.map { prebuiltBody(detail: $0) } }

    init(_ outcome: AdmissionDecision.Outcome) {
        switch outcome {
        case .admitted: preconditionFailure("an admitted request is not a problem")
        case .invalidKey: self = .invalidAPIKey
        case .keyRevoked: self = .keyRevoked
        case .keyExpired: self = .keyExpired
        case .scopeDenied: self = .scopeDenied
        case .quotaExceeded: self = .quotaExceeded
        case .storeUnavailable: self = .storeUnavailable
        }
    }

    /// The `quota_exceeded` detail when no `Retry-After` is sent: a spent `total` limit
    /// never resets, so the text must not promise a wait.
    static let quotaNeverResetsDetail =
        "A quota of the API key is spent and does not reset (a total limit); 'violated-policies' names it. Ask the key's issuer for more."

    /// The RFC 9457 body, built once at start-up; `quota_exceeded` leaves its
    /// `violated-policies` list open for ``quotaExceededBody(prefix:policies:)`` to finish.
    var prebuiltBody: String { prebuiltBody(detail: detail) }

    /// The `quota_exceeded` prefix for an answer without `Retry-After`.
    static var quotaNeverResetsPrefix: String { Problem.quotaExceeded.prebuiltBody(detail: quotaNeverResetsDetail) }

    private func prebuiltBody(detail: String) -> String {
        let json = "{\"title\":\"\(status.reasonPhrase)\",\"status\":\(status.code),\"detail\":\"\(detail)\",\"code\":\"\(rawValue)\""
        return self == .quotaExceeded ? json + ",\"violated-policies\":[" : json + "}"
    }

    /// Finishes the `quota_exceeded` body with the names of the spent limits.
    static func quotaExceededBody(prefix: ByteBuffer, policies: [String]) -> ByteBuffer {
        var body = prefix
        body.reserveCapacity(minimumWritableBytes: policies.reduce(2) { $0 + $1.utf8.count + 3 })
        for (index, policy) in policies.enumerated() {
            // Policy names hold no quote or backslash: scope patterns refuse them.
            body.writeString(index == 0 ? "\"" : ",\"")
            body.writeString(policy)
            body.writeString("\"")
        }
        body.writeString("]}")
        return body
    }
}
