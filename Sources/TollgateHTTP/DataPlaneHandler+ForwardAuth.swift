import NIOCore
import NIOHTTP1
import TollgateCore

/// Forward-auth: another proxy (nginx `auth_request`, Traefik `ForwardAuth`, Caddy
/// `forward_auth`, Envoy's HTTP `ext_authz`) asks whether a request may pass; the answer is
/// decided and counted exactly as the routed request would be, and nothing is forwarded.
/// Which fields name the original request is the form's business (``ForwardAuthForm``).
extension DataPlaneHandler {
    /// The header that names the admitted key's id in a forward-auth `200`.
    static var forwardAuthKeyIDHeader: String { "X-Tollgate-Key-Id" }

    /// - Parameters:
    ///   - mount: the normalized path the form is served at (`auth`, `auth/envoy`).
    ///   - below: whether the request's path goes on below `mount` (the original path, for
    ///     the generic and Envoy forms).
    ///   - hasBody: a body announced above ``forwardAuthMaxBodyBytes`` (a smaller one was read
    ///     away before this is called).
    func forwardAuth(
        _ head: HTTPRequestHead, form: ForwardAuthForm, mount: Substring, below: Bool, hasBody: Bool, context: ChannelHandlerContext
    ) {
        let isHead = head.method == .HEAD
        if hasBody { return writeProblem(.bodyTooLarge, isHead: isHead, context: context) }
        var rawBelow: Substring? = nil
        if below || form == .envoy {
            // The original target is the raw text after the mount, query included; a mount
            // written with percent-escapes is not guessed at.
            let raw = "/" + mount
            guard head.uri.hasPrefix(raw) else { return writeProblem(.badPath, isHead: isHead, context: context) }
            let rest = head.uri.dropFirst(raw.utf8.count)
            rawBelow = rest.first == "/" ? rest : (below ? nil : Substring("/" + rest))
        }
        let original: OriginalRequest
        switch OriginalRequest.read(form, headers: head.headers, method: head.method, below: rawBelow) {
        case .success(let request): original = request
        case .failure(.none): return writeProblem(.unknownRoute, isHead: isHead, context: context)
        case .failure(.ambiguous): return writeProblem(.ambiguousOriginalRequest, isHead: isHead, context: context)
        case .failure(.missing), .failure(.badMethod): return writeProblem(.badOriginalRequest, isHead: isHead, context: context)
        }
        guard let path = RequestPath.normalize(original.target) else {
            return writeProblem(.badPath, isHead: isHead, context: context)
        }
        guard case .route(let route) = resolve(path) else {
            return writeProblem(.unknownRoute, isHead: isHead, context: context)
        }
        observe(route)
        guard route.methods?.contains(original.method) ?? true else {
            return writeProblem(.methodNotAllowed, allow: route.allowField, isHead: isHead, context: context)
        }
        decide(head.headers, route: route, path: path, isHead: isHead, context: context) { _, decision, headers in
            var headers = headers
            if let id = decision.keyID { headers.add(name: Self.forwardAuthKeyIDHeader, value: id.description) }
            self.write(status: .ok, headers: headers, body: ByteBuffer(), isHead: isHead, context: context)
        }
    }
}
