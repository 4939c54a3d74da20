import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import TollgateCore

/// An error the control plane answers with: the one place where domain and store errors
/// become HTTP statuses and problem codes, so every route maps them alike.
public struct AdminError: Error, Sendable {
    public var status: HTTPResponse.Status
    /// The `code` member of the problem body, stable for scripts to match on.
    public var code: String
    public var detail: String
    /// The request field at fault (`limits[1]`, `expires_at`, the query's `limit`), if any.
    public var field: String?
    /// Header fields the answer must carry (`WWW-Authenticate` on a 401).
    public var headers: HTTPFields = [:]

    public init(status: HTTPResponse.Status, code: String, detail: String, field: String? = nil) {
        self.status = status
        self.code = code
        self.detail = detail
        self.field = field
    }

    /// A request field that is missing, mistyped or does not parse.
    static func badField(_ field: String, _ detail: String) -> AdminError {
        AdminError(status: .badRequest, code: "invalid_request", detail: "\(field): \(detail)", field: field)
    }

    static func keyNotFound(_ id: String) -> AdminError {
        AdminError(status: .notFound, code: "key_not_found", detail: "No key has id \(TollgateError.quote(id)).")
    }

    /// `/admin/v1` on a server started without an admin token: `404`, saying how to turn
    /// it on.
    static var adminAPIOff: AdminError {
        AdminError(
            status: .notFound, code: "not_found",
            detail:
                "The admin API is off: no admin token was set. Start 'tollgate serve' with --admin-token-file PATH or TOLLGATE_ADMIN_TOKEN to serve it."
        )
    }

    static var missingToken: AdminError {
        var error = AdminError(
            status: .unauthorized, code: "missing_admin_token",
            detail: "The admin API needs 'Authorization: Bearer ADMIN_TOKEN' (the token the server was started with).")
        error.headers[.wwwAuthenticate] = "Bearer realm=\"tollgate-admin\""
        return error
    }

    static var invalidToken: AdminError {
        var error = AdminError(
            status: .unauthorized, code: "invalid_admin_token", detail: "The admin token is not the one the server was started with.")
        error.headers[.wwwAuthenticate] = "Bearer realm=\"tollgate-admin\", error=\"invalid_token\""
        return error
    }

    /// A domain or store error, with the request field it concerns when the route knows it.
    public init(_ error: TollgateError, field: String? = nil) {
        switch error.code {
        case .invalidLimit, .invalidScope, .invalidTime, .invalidInput:
            self =
                field.map { .badField($0, error.message) }
                ?? AdminError(status: .badRequest, code: "invalid_request", detail: error.message)
        case .keyNotFound:
            self.init(status: .notFound, code: "key_not_found", detail: error.message)
        case .keyExists:
            self.init(status: .conflict, code: "key_exists", detail: error.message)
        case .storeUnavailable, .storeLocked:
            self.init(status: .serviceUnavailable, code: "store_unavailable", detail: error.message)
        case .versionMismatch:
            self.init(status: .preconditionFailed, code: "precondition_failed", detail: error.message)
        case .invalidStoreURL:
            self.init(status: .internalServerError, code: "internal_error", detail: error.message)
        }
    }

    /// Any error a route throws, as the error it is answered with. Unexpected errors become
    /// a `500` carrying `correlationID`, which the caller logs with the error itself.
    static func from(_ error: any Error, correlationID: String) -> AdminError {
        switch error {
        case let error as AdminError: return error
        case let error as TollgateError: return AdminError(error)
        case let error as any HTTPResponseError:
            let code: String =
                switch error.status {
                case .notFound: "not_found"
                case .methodNotAllowed: "method_not_allowed"
                case .contentTooLarge: "body_too_large"
                case .badRequest: "invalid_request"
                default: "http_\(error.status.code)"
                }
            let detail: String =
                switch error.status {
                case .notFound: "Nothing is served at this path."
                case .contentTooLarge: "The request body is over \(AdminBody.maximumSize) bytes."
                default: error.status.reasonPhrase
                }
            return AdminError(status: error.status, code: code, detail: detail)
        default:
            return AdminError(
                status: .internalServerError, code: "internal_error",
                detail: "The request failed inside the server; its log holds the cause under correlation id \(correlationID).")
        }
    }

    /// The `application/problem+json` answer (RFC 9457).
    func response(correlationID: String? = nil) -> Response {
        let problem = ProblemBody(
            title: status.reasonPhrase, status: status.code, detail: detail, code: code, field: field,
            correlationID: status.code >= 500 ? correlationID : nil)
        var headers = headers
        headers[.contentType] = "application/problem+json"
        headers[.cacheControl] = "no-store"
        return Response(status: status, headers: headers, body: .init(byteBuffer: encodeJSON(problem)))
    }
}

struct ProblemBody: Encodable {
    var title: String
    var status: Int
    var detail: String
    var code: String
    var field: String?
    var correlationID: String?

    enum CodingKeys: String, CodingKey {
        case title, status, detail, code, field
        case correlationID = "correlation_id"
    }
}

/// JSON as every admin answer writes it: sorted keys, so that answers are stable to diff.
func encodeJSON(_ value: some Encodable) -> ByteBuffer {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    // The values encoded here are plain records; encoding them cannot fail.
    let data = (try? encoder.encode(value)) ?? Data("{}".utf8)
    return ByteBuffer(bytes: data)
}

/// A short random id tying an answer to its log line.
func makeCorrelationID() -> String {
    var generator = SystemRandomNumberGenerator()
    return String(generator.next() as UInt64, radix: 16)
}
