import Logging
import NIOCore
import NIOHTTP1
import TollgateCore

/// What a request's head makes of it, decided once at its head.
enum RequestPlan {
    /// Refused from its head alone; `allow` for a `405`.
    case problem(Problem, allow: String? = nil)
    case health
    case ready
    /// A fixed answer of `route`, for the normalized `path`.
    case fixed(Route, path: String)
    /// A forward-auth question (``ForwardAuthForm``) at `mount`.
    case forwardAuth(ForwardAuthForm, mount: Substring, below: Bool)
    /// Forwarded to `upstream`.
    case proxy(Route, Upstream, path: String)
}

extension GatewayConnection {
    /// Where a normalized path goes.
    enum Target {
        case health, ready
        /// A forward-auth endpoint: its form, and the path it is mounted at (`auth`,
        /// `auth/nginx`); `below`: whether the request's path goes on below it.
        case forwardAuth(ForwardAuthForm, mount: Substring, below: Bool)
        case route(Route)
        case none
    }

    func resolve(_ path: String, in table: RouteTable) -> Target {
        if path == "healthz" { return .health }
        if path == "readyz" { return .ready }
        if let auth = table.forwardAuthPath, path.utf8.starts(with: auth.utf8) {
            let rest = Substring(path.utf8.dropFirst(auth.utf8.count))
            if rest.isEmpty { return .forwardAuth(.generic, mount: Substring(path), below: false) }
            if rest.utf8.first == UInt8(ascii: "/") {
                let segment = rest.dropFirst().prefix { $0 != "/" }
                let mount = path[..<segment.endIndex]
                switch ForwardAuthForm.named(segment) {
                case nil:
                    return .forwardAuth(.generic, mount: Substring(auth), below: true)
                case .envoy:
                    return .forwardAuth(.envoy, mount: mount, below: segment.endIndex != path.endIndex)
                case let form?:
                    // The nginx and Traefik forms take no path below them.
                    return segment.endIndex == path.endIndex ? .forwardAuth(form, mount: mount, below: false) : .none
                }
            }
        }
        return table.route(for: path).map(Target.route) ?? .none
    }

    /// The refusal a head earns by itself (RFC 9112 section 3.2): an HTTP/1.1 request
    /// without `Host`, any request with two; and an HTTP/1.0 request with
    /// `Transfer-Encoding`, a framing 1.0 does not have (section 6.1).
    static func problem(inHead head: MessageHead) -> Problem? {
        let hosts = head.count("host")
        if hosts > 1 || (hosts == 0 && head.version != .http1_0) { return .badRequest }
        if head.isChunked && head.version == .http1_0 { return .badRequest }
        return nil
    }

    /// The largest body a forward-auth question may carry: it is read away, never used.
    static var forwardAuthMaxBodyBytes: Int { 64 * 1024 }

    /// The plan for a head, and what the connection does with its body; and the route the
    /// request is for, if one serves its path (metrics and the access log name it).
    func plan(for head: MessageHead, table: RouteTable) -> (RequestPlan, ConnectionStateMachine<NIODeadline>.HeadKind, Route?) {
        let (plan, kind) = planAndKind(for: head, table: table)
        switch plan {
        case .fixed(let route, _), .proxy(let route, _, _): return (plan, kind, route)
        case .problem(.methodNotAllowed, _), .problem(.bodyNotAllowed, _):
            if let path = RequestPath.normalize(head.targetString), case .route(let route) = resolve(path, in: table) {
                return (plan, kind, route)
            }
            return (plan, kind, nil)
        default: return (plan, kind, nil)
        }
    }

    private func planAndKind(for head: MessageHead, table: RouteTable) -> (RequestPlan, ConnectionStateMachine<NIODeadline>.HeadKind) {
        let hasBody = head.hasBody
        let refusal: (Problem, String?) -> (RequestPlan, ConnectionStateMachine<NIODeadline>.HeadKind) = { problem, allow in
            (.problem(problem, allow: allow), hasBody ? .refusedWithBody : .decidedAtEnd(dropsBody: false))
        }
        if let problem = Self.problem(inHead: head) { return refusal(problem, nil) }
        let target = head.targetString
        guard let path = RequestPath.normalize(target) else {
            // Envoy asks about the root as `/auth/envoy/`, a path that is otherwise refused.
            if let auth = table.forwardAuthPath, target == "/\(auth)/envoy/" || target.hasPrefix("/\(auth)/envoy/?") {
                return (.forwardAuth(.envoy, mount: Substring("\(auth)/envoy"), below: true), .decidedAtEnd(dropsBody: hasBody))
            }
            return refusal(.badPath, nil)
        }
        let method = head.method
        switch resolve(path, in: table) {
        case .none:
            return refusal(.notFound, nil)
        case .health, .ready:
            guard method == .GET || method == .HEAD else { return refusal(.methodNotAllowed, "GET, HEAD") }
            if hasBody { return refusal(.bodyNotAllowed, nil) }
            return (path == "healthz" ? .health : .ready, .decidedAtEnd(dropsBody: false))
        case .forwardAuth(let form, let mount, let below):
            let plan = RequestPlan.forwardAuth(form, mount: mount, below: below)
            if let length = head.contentLength, length > Self.forwardAuthMaxBodyBytes { return refusal(.bodyTooLarge, nil) }
            return (plan, .decidedAtEnd(dropsBody: hasBody))
        case .route(let route):
            guard route.methods?.contains(method) ?? true else { return refusal(.methodNotAllowed, route.allowField) }
            switch route.action {
            case .upstream(let upstream) where method != .CONNECT:
                return (.proxy(route, upstream, path: path), .streamed(hasBody: hasBody))
            case .upstream:
                return refusal(.methodNotAllowed, route.allowField)
            case .fixed:
                // Fixed answers take no body: answered at once, the body read away.
                if hasBody { return refusal(.bodyNotAllowed, nil) }
                return (.fixed(route, path: path), .decidedAtEnd(dropsBody: false))
            }
        }
    }

    /// A request head arrived: plan it, number it, and do what the machine says.
    func headArrived(_ head: MessageHead) {
        guard let context else { return }
        let (plan, kind, route) = self.plan(for: head, table: shared.routes.current)
        // After CONNECT or an upgrade request nothing that follows is HTTP: answer, then close.
        let keepAlive = head.keepAlive && !head.isUpgrade && head.method != .CONNECT
        let action = machine.headReceived(kind, keepAlive: keepAlive)
        let number: Int
        switch action {
        case .parse(let n), .refuse(let n), .beginStream(let n), .waitForEarlierAnswers(let n): number = n
        }
        var answer = OwedAnswer(
            number: number, plan: plan, isHead: head.method == .HEAD, http10: head.version == .http1_0, start: context.eventLoop.now)
        if shared.monitor.keepsHeads {
            answer.observed.method = head.method
            answer.observed.uri = head.targetString
        }
        if let route { observe(route, in: &answer.observed) }
        if case .proxy = plan { answer.head = head }
        if case .forwardAuth = plan { droppedBodyBytes = 0 }
        owed.append(answer)
        switch action {
        case .parse, .waitForEarlierAnswers:
            break
        case .refuse(let number):
            decide(number)
        case .beginStream(let number):
            startProxy(number)
        }
    }

    /// Names the request's API for metrics (an index) and the access log (the name).
    func observe(_ route: Route, in observed: inout ObservedRequest) {
        observed.api = shared.monitor.apiIndex(of: route.name)
        if shared.monitor.keepsHeads { observed.apiName = route.name }
    }

    /// Body data of the request whose head came last.
    func bodyArrived(_ spans: [Range<Int>]) {
        switch machine.reading {
        case .forwardBody:
            proxyBody(spans)
        case .dropBody(_, refused: false):
            droppedBodyBytes += spans.reduce(0) { $0 + $1.count }
            if droppedBodyBytes > Self.forwardAuthMaxBodyBytes, let number = machine.bodyRefused() {
                // A chunked body that outgrew the bound: refused before it was decided.
                writeProblem(number, .bodyTooLarge)
            }
        default:
            break
        }
    }

    /// Decides request `number` at its end (or at its head, for a refusal with a body).
    func decide(_ number: Int) {
        guard let index = owedIndex(number) else { return }
        switch owed[offset: index].plan {
        case .problem(let problem, let allow):
            writeProblem(number, problem, allow: allow)
        case .health:
            owed[offset: index].observed.outcome = .health
            writePrebuilt(number, shared.health)
        case .ready:
            owed[offset: index].observed.outcome = .health
            checkReadiness(number)
        case .fixed(let route, let path):
            guard let fixed = shared.routes.current.fixedAnswers[route.name] else { return writeProblem(number, .notFound) }
            admit(number, head: parser.head, route: route, path: path) { this, _, decision in
                this.respond(number, status: fixed.status) { out, connection in
                    out.writeImmutableBuffer(fixed.head)
                    AnswerEncoder.writeRateLimitFields(decision.limits, to: &out)
                    AnswerEncoder.finish(
                        &out, body: fixed.body, date: this.date(), metered: true, connection: connection, isHead: this.isHead(number))
                }
            }
        case .forwardAuth(let form, let mount, let below):
            forwardAuth(number, head: parser.head, form: form, mount: mount, below: below)
        case .proxy:
            break
        }
    }

    func isHead(_ number: Int) -> Bool {
        owedIndex(number).map { owed[offset: $0].isHead } ?? false
    }

    func date() -> ByteBuffer {
        dateLine.line(at: shared.clock.now)
    }

    /// Checks the key, asks the store, and answers any refusal; `admitted` runs on an
    /// admission with the request as the store decided it (for a give-back).
    func admit(
        _ number: Int,
        head: MessageHead,
        route: Route,
        path: String,
        admitted: @escaping (GatewayConnection, AdmissionRequest, AdmissionDecision) -> Void
    ) {
        guard let context else { return }
        guard let secret = KeyFields.secret(in: head) else { return writeProblem(number, .missingAPIKey) }
        // A mistyped or forged `tg_` key fails its checksum: refused without a store lookup.
        let digest: KeyDigest? = head.bytes.withUnsafeReadableBytes { raw in
            let bytes = UnsafeRawBufferPointer(rebasing: raw[secret])
            guard bytes.count <= KeyIssuer.maximumSecretLength, KeySecret.isPlausible(bytes: bytes) else { return nil }
            return KeyDigest(secretBytes: bytes)
        }
        guard let digest else { return writeProblem(number, .invalidAPIKey) }
        let request = AdmissionRequest(digest: digest, api: route.name, path: route.scopePath(for: path), now: shared.clock.now)
        let promise = context.eventLoop.makePromise(of: AdmissionDecision.self)
        shared.store.admit(request, promise: promise)
        promise.futureResult.assumeIsolated().whenComplete { result in
            guard let index = self.owedIndex(number) else { return }
            switch result {
            case .success(let decision):
                self.owed[offset: index].observed.keyID = decision.keyID
                if let id = decision.keyID, self.shared.logger.logLevel <= .debug {
                    self.shared.logger.debug(
                        "decided", metadata: ["key": "\(id)", "api": "\(route.name)", "outcome": "\(decision.outcome.rawValue)"])
                }
                if decision.outcome == .admitted {
                    // A proxied request keeps it when forwarded; an upstream failure replaces it.
                    self.owed[offset: index].observed.outcome = .admitted
                    return admitted(self, request, decision)
                }
                self.refuse(number, decision)
            case .failure(let error):
                self.shared.logger.error("the store failed a decision", metadata: ["error": "\(error)"])
                self.writeProblem(number, .storeUnavailable)
            }
        }
    }

    private func checkReadiness(_ number: Int) {
        guard let context else { return }
        let store = shared.store
        let promise = context.eventLoop.makePromise(of: Bool.self)
        promise.completeWithTask { await store.isReady() }
        promise.futureResult.assumeIsolated().whenSuccess { ready in
            self.writePrebuilt(number, ready ? self.shared.ready : self.shared.notReady)
        }
    }

    private func refuse(_ number: Int, _ decision: AdmissionDecision) {
        let problem = Problem(decision.outcome)
        guard problem == .quotaExceeded else { return writeProblem(number, problem, limits: decision.limits) }
        // The detail says when to retry only when Retry-After is there to say it.
        let prefix = decision.retryAfter == nil ? shared.quotaNeverResetsPrefix : shared.problems[.quotaExceeded]!.body
        let body = Problem.quotaExceededBody(prefix: prefix, policies: decision.limits.filter(\.isSpent).map(\.policy))
        writeProblem(number, .quotaExceeded, limits: decision.limits, retryAfter: decision.retryAfter, body: body)
    }

    // MARK: Answers

    /// Writes a prebuilt answer (health) as request `number`'s.
    func writePrebuilt(_ number: Int, _ answer: PrebuiltAnswer) {
        respond(number, status: answer.status) { out, connection in
            out.writeImmutableBuffer(answer.head)
            AnswerEncoder.finish(
                &out, body: answer.body, date: self.date(), metered: false, connection: connection, isHead: self.isHead(number))
        }
    }

    /// Writes `problem` as request `number`'s answer (with the key's RateLimit fields when
    /// the key is known, `Allow` for a `405`, `Retry-After` for a `429` that resets).
    func writeProblem(
        _ number: Int,
        _ problem: Problem,
        allow: String? = nil,
        limits: [LimitStatus] = [],
        retryAfter: Int64? = nil,
        body: ByteBuffer? = nil,
        prebuilt: PrebuiltAnswer? = nil
    ) {
        guard let index = owedIndex(number) else { return }
        owed[offset: index].observed.outcome = RequestOutcome(problem)
        switch problem {
        case .badRequest, .headersTooLarge, .bodyNotAllowed, .bodyTooLarge: machine.closeAfterAnswers()
        default: break
        }
        let answer = prebuilt ?? shared.problems[problem]!
        respond(number, status: answer.status) { out, connection in
            out.writeImmutableBuffer(answer.head)
            if problem == .methodNotAllowed {
                out.writeStaticString("allow: ")
                out.writeString(allow ?? "GET, HEAD")
                out.writeStaticString("\r\n")
            }
            AnswerEncoder.writeRateLimitFields(limits, to: &out)
            if let retryAfter {
                out.writeStaticString("retry-after: ")
                out.writeDecimal(retryAfter)
                out.writeStaticString("\r\n")
            }
            AnswerEncoder.finish(
                &out, body: body ?? answer.body, date: self.date(), metered: !limits.isEmpty, connection: connection,
                isHead: self.isHead(number))
        }
    }
}
