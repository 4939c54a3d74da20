import NIOCore
import NIOHTTP1
import TollgateCore

/// Forward-auth: another proxy (nginx `auth_request`, Traefik `ForwardAuth`, Caddy
/// `forward_auth`, Envoy's HTTP `ext_authz`) asks whether a request may pass; the answer is
/// decided and counted exactly as the routed request would be, and nothing is forwarded.
/// Which fields name the original request is the form's business (``ForwardAuthForm``).
extension GatewayConnection {
    /// The header that names the admitted key's id in a forward-auth `200`.
    static var forwardAuthKeyIDHeader: String { "X-Tollgate-Key-Id" }

    /// - Parameters:
    ///   - mount: the normalized path the form is served at (`auth`, `auth/envoy`).
    ///   - below: whether the request's path goes on below `mount` (the original path, for
    ///     the generic and Envoy forms).
    func forwardAuth(_ number: Int, head: MessageHead, form: ForwardAuthForm, mount: Substring, below: Bool) {
        let target = head.targetString
        var rawBelow: Substring? = nil
        if below || form == .envoy {
            // The original target is the raw text after the mount, query included; a mount
            // written with percent-escapes is not guessed at.
            let raw = "/" + mount
            guard target.hasPrefix(raw) else { return writeProblem(number, .badPath) }
            let rest = target.dropFirst(raw.utf8.count)
            rawBelow = rest.first == "/" ? rest : (below ? nil : Substring("/" + rest))
        }
        let original: OriginalRequest
        switch OriginalRequest.read(form, headers: head.headers, method: head.method, below: rawBelow) {
        case .success(let request): original = request
        case .failure(.none): return writeProblem(number, .unknownRoute)
        case .failure(.ambiguous): return writeProblem(number, .ambiguousOriginalRequest)
        case .failure(.missing), .failure(.badMethod): return writeProblem(number, .badOriginalRequest)
        }
        guard let path = RequestPath.normalize(original.target) else { return writeProblem(number, .badPath) }
        guard case .route(let route) = resolve(path, in: shared.routes.current) else { return writeProblem(number, .unknownRoute) }
        if let index = owedIndex(number) { observe(route, in: &owed[offset: index].observed) }
        guard route.methods?.contains(original.method) ?? true else {
            return writeProblem(number, .methodNotAllowed, allow: route.allowField)
        }
        admit(number, head: head, route: route, path: path) { this, _, decision in
            this.respond(number, status: .ok) { out, connection in
                out.writeStaticString("HTTP/1.1 200 OK\r\n")
                AnswerEncoder.writeRateLimitFields(decision.limits, to: &out)
                if let id = decision.keyID {
                    out.writeStaticString("x-tollgate-key-id: ")
                    out.writeString(id.description)
                    out.writeStaticString("\r\n")
                }
                AnswerEncoder.finish(&out, body: ByteBuffer(), date: this.date(), metered: true, connection: connection, isHead: true)
            }
        }
    }
}
