import Hummingbird
import Logging
import NIOCore

/// Answers every error on the control plane as `application/problem+json`, as the data
/// plane does, so that clients of either listener parse one error format.
struct ProblemMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as any HTTPResponseError {
            return Self.problem(status: error.status, detail: nil)
        } catch {
            context.logger.error("control plane request failed", metadata: ["error": "\(error)"])
            return Self.problem(status: .internalServerError, detail: "The request failed inside the server; its log says why.")
        }
    }

    static func problem(status: HTTPResponse.Status, detail: String?) -> Response {
        let code: String =
            switch status {
            case .notFound: "not_found"
            case .methodNotAllowed: "method_not_allowed"
            case .badRequest: "bad_request"
            case .internalServerError: "internal_error"
            default: "http_\(status.code)"
            }
        let detail = detail ?? (status == .notFound ? "Nothing is served at this path." : status.reasonPhrase)
        let body = "{\"title\":\"\(status.reasonPhrase)\",\"status\":\(status.code),\"detail\":\"\(detail)\",\"code\":\"\(code)\"}"
        return Response(
            status: status,
            headers: [.contentType: "application/problem+json"],
            body: .init(byteBuffer: ByteBuffer(string: body))
        )
    }
}
