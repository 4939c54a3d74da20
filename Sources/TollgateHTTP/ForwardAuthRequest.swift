import NIOHTTP1

/// Which proxy asks a forward-auth question, and so which fields say what its client asked
/// for.
///
/// Proxies pass most of their client's header fields through to the auth request, and each
/// sets only its own family of fields: nginx `auth_request` sets `X-Original-URI` and passes
/// a client's `X-Forwarded-Uri` through; Traefik and Caddy set `X-Forwarded-Uri` and pass a
/// client's `X-Original-URI`. No order of fields is safe for every proxy, so each proxy has
/// a form that reads only what that proxy sets, and the generic form refuses a question
/// whose sources disagree.
public enum ForwardAuthForm: String, Sendable, CaseIterable {
    /// `/auth`: any one source (the fields of either family, or the path below it); two
    /// sources that differ are refused.
    case generic
    /// `/auth/nginx`: `X-Original-URI` and `X-Original-Method` only.
    case nginx
    /// `/auth/traefik` and `/auth/caddy`: `X-Forwarded-Uri` and `X-Forwarded-Method` only.
    case traefik
    /// `/auth/envoy/...`: the path below the prefix and the request's own method (Envoy's
    /// `ext_authz` with `path_prefix: /auth/envoy`); no field is read.
    case envoy

    /// The form a segment below the auth path names (`caddy` is Traefik's family).
    static func named(_ segment: Substring) -> ForwardAuthForm? {
        switch segment {
        case "nginx": .nginx
        case "traefik", "caddy": .traefik
        case "envoy": .envoy
        default: nil
        }
    }
}

/// The request a forward-auth question is about: the method and target the proxy's client sent.
struct OriginalRequest: Equatable {
    var method: HTTPMethod
    var target: String

    /// Why a question cannot be decided.
    enum Failure: Error, Equatable {
        /// No source names the original request (the generic form: no route to decide for).
        case none
        /// The form's own field is missing: the proxy is not set up as its form expects.
        case missing
        /// Two sources name different requests or methods.
        case ambiguous
        /// The original method is not an HTTP token.
        case badMethod
    }

    /// Reads the original request as `form` defines it.
    ///
    /// - Parameters:
    ///   - headers: the forward-auth request's fields.
    ///   - method: the forward-auth request's own method.
    ///   - below: the raw target below the form's path (`/v1/x?q=1`), when the request was
    ///     sent below it (the generic and Envoy forms), else `nil`.
    static func read(
        _ form: ForwardAuthForm, headers: HTTPHeaders, method: HTTPMethod, below: Substring?
    ) -> Result<OriginalRequest, Failure> {
        let targets: [String]
        var methods: [String]
        switch form {
        case .generic:
            targets =
                headers["x-original-uri"] + headers["x-forwarded-uri"]
                + (below.map { [String($0)] } ?? [])
            if targets.isEmpty { return .failure(.none) }
            methods = headers["x-original-method"] + headers["x-forwarded-method"]
            // The path below the prefix is Envoy's way, and Envoy sends the original method
            // as the request's own: then that method is a source too.
            if below != nil { methods.append(method.rawValue) }
        case .nginx:
            targets = headers["x-original-uri"]
            methods = headers["x-original-method"]
        case .traefik:
            targets = headers["x-forwarded-uri"]
            methods = headers["x-forwarded-method"]
        case .envoy:
            targets = [below.map(String.init) ?? "/"]
            methods = [method.rawValue]
        }
        guard let target = targets.first else { return .failure(.missing) }
        guard targets.allSatisfy({ $0 == target }), methods.allSatisfy({ $0 == methods[0] }) else {
            return .failure(.ambiguous)
        }
        guard let name = methods.first else { return .success(OriginalRequest(method: method, target: target)) }
        guard Self.isToken(name) else { return .failure(.badMethod) }
        return .success(OriginalRequest(method: HTTPMethod(rawValue: name), target: target))
    }

    /// Whether `text` is an HTTP token (RFC 9110 section 5.6.2), as a method must be.
    static func isToken(_ text: String) -> Bool {
        !text.isEmpty
            && text.utf8.allSatisfy { byte in
                switch byte {
                case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
                    true
                default:
                    "!#$%&'*+-.^_`|~".utf8.contains(byte)
                }
            }
    }
}
