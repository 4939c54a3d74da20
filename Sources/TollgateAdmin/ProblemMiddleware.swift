import Hummingbird
import Logging
import NIOCore

/// Answers every error on the control plane as `application/problem+json`, as the data
/// plane does, so that clients of either listener parse one error format.
///
/// An error no route expects becomes a `500` whose correlation id is in the body and in the
/// log line holding the error, so an operator can find one from the other.
struct ProblemMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch {
            let correlationID = makeCorrelationID()
            let answer = AdminError.from(error, correlationID: correlationID)
            if answer.status.code >= 500 {
                context.logger.error(
                    "control plane request failed",
                    metadata: [
                        "correlation_id": "\(correlationID)", "method": "\(request.method)", "path": "\(request.uri.path)",
                        "error": "\(error)",
                    ])
            }
            return answer.response(correlationID: correlationID)
        }
    }
}
