import NIOCore
import NIOHTTP1
import TollgateCore

/// Forward-auth: another proxy (nginx `auth_request`, Traefik `ForwardAuth`, Envoy's HTTP
/// `ext_authz`) asks whether a request may pass; the answer is decided and counted exactly
/// as the routed request would be, and nothing is forwarded.
extension DataPlaneHandler {
    /// The header that names the admitted key's id in a forward-auth `200`.
    static var forwardAuthKeyIDHeader: String { "X-Tollgate-Key-Id" }

    /// The original method and target: from `X-Original-URI`/`X-Original-Method` (nginx),
    /// `X-Forwarded-Uri`/`X-Forwarded-Method` (Traefik), or, for Envoy, the path below the
    /// auth path with the request's own method and query. A method header that is missing
    /// means the request's own method.
    static func originalRequest(_ head: HTTPRequestHead, below: Substring?) -> (method: HTTPMethod, target: String)? {
        let headers = head.headers
        if let target = headers.first(name: "x-original-uri") {
            return (headers.first(name: "x-original-method").map { HTTPMethod(rawValue: $0) } ?? head.method, target)
        }
        if let target = headers.first(name: "x-forwarded-uri") {
            return (headers.first(name: "x-forwarded-method").map { HTTPMethod(rawValue: $0) } ?? head.method, target)
        }
        guard let below else { return nil }
        let query = head.uri.firstIndex(of: "?").map { head.uri[$0...] } ?? ""
        return (head.method, String(below) + query)
    }

    func forwardAuth(_ head: HTTPRequestHead, below: Substring?, hasBody: Bool, context: ChannelHandlerContext) {
        let isHead = head.method == .HEAD
        guard let original = Self.originalRequest(head, below: below) else {
            return writeProblem(.unknownRoute, isHead: isHead, context: context)
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
