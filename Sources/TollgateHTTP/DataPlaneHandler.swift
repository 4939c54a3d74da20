import Logging
import NIOCore
import NIOHTTP1
import TollgateCore

/// What every connection's handler shares: the store, the routes and the prebuilt answers.
final class DataPlaneShared<Store: KeyStore, Clock: WallClock>: Sendable {
    let store: Store
    let clock: Clock
    let logger: Logger
    let configuration: DataPlaneConfiguration
    /// The routes in force; each request reads them once.
    let routes: LiveRoutes
    /// Upstream connection pools, one per event loop.
    let pools: UpstreamPools
    /// Problem to its prebuilt body (for `quota_exceeded`, the part before the policies).
    let problems: [Problem: ByteBuffer]
    /// Upstream failures on a route with `give_back_on_5xx`, whose text says the unit goes back.
    let givenBackProblems: [Problem: ByteBuffer]
    /// The `quota_exceeded` prefix for a spent limit that never resets (no `Retry-After`).
    let quotaNeverResetsPrefix = ByteBuffer(string: Problem.quotaNeverResetsPrefix)
    let healthBody = ByteBuffer(string: "{\"status\":\"ok\"}")
    let notReadyBody = ByteBuffer(string: "{\"status\":\"unavailable\"}")
    /// Metrics and the access log; its API table is the routes in force at start.
    let monitor: DataPlaneMonitor

    init(store: Store, clock: Clock, configuration: DataPlaneConfiguration, logger: Logger) {
        self.store = store
        self.clock = clock
        self.logger = logger
        self.configuration = configuration
        self.routes = configuration.routes
        self.pools = UpstreamPools(logger: logger)
        self.monitor = DataPlaneMonitor(routes: configuration.routes.current, monitoring: configuration.monitoring)
        self.problems = Dictionary(uniqueKeysWithValues: Problem.allCases.map { ($0, ByteBuffer(string: $0.prebuiltBody)) })
        self.givenBackProblems = Dictionary(
            uniqueKeysWithValues: Problem.allCases.compactMap { problem in
                problem.prebuiltGivenBackBody.map { (problem, ByteBuffer(string: $0)) }
            })
    }
}

/// The data plane: one handler per connection, after NIO's HTTP/1.1 server pipeline (which
/// keeps pipelined answers in order), deciding every request on the event loop.
///
/// For a key the store holds, the decision costs a digest and a dictionary lookup under a
/// short lock; the answer leaves when the store completes the promise (for SQLite, after
/// the group commit that made the usage durable). The connection's state lives in a
/// ``ConnectionStateMachine``; this handler carries out its actions.
final class DataPlaneHandler<Store: KeyStore, Clock: WallClock>: ChannelDuplexHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    let shared: DataPlaneShared<Store, Clock>
    var machine: ConnectionStateMachine<NIODeadline, HTTPRequestHead>
    private var idleTimer: Scheduled<Void>?
    var dateHeader = DateHeader()
    /// The route table read when the request in progress began.
    private(set) var table = RouteTable.builtIn
    /// The request in progress's normalized path (`nil` for a target refused as `bad_path`),
    /// normalized once at its head.
    private var requestPath: String?
    /// A refusal decided from the request's head alone (its `Host` fields), answered before
    /// anything else is looked at.
    private var headProblem: Problem?
    /// The bytes of a forward-auth request's body read away so far; `nil` unless one is
    /// being read (its end is awaited, then the question is answered).
    private var forwardAuthBodyBytes: Int?
    /// The request being forwarded upstream, if any.
    var exchange: ProxyExchange?
    /// One timer per connection for upstream response timeouts, re-armed lazily.
    var responseTimer: (task: Scheduled<Void>, deadline: NIODeadline)?
    /// This connection's event loop's upstream pool, found on first use.
    var pool: UpstreamPool?
    /// The peer's address and its text for `X-Forwarded-For`, once known.
    var peer: (address: SocketAddress?, text: String?)?
    /// Whether the request in progress came from an HTTP/1.0 client (answered with 1.0's
    /// framing: no chunks, `Connection: keep-alive` when it asked to keep the connection).
    private(set) var requestIsHTTP10 = false
    /// Request ids: a random tag per connection and a count.
    var requestIDs = RequestIDs()
    /// The request being answered, for metrics and the access log.
    var observed = ObservedRequest()

    init(shared: DataPlaneShared<Store, Clock>) {
        self.shared = shared
        self.machine = ConnectionStateMachine(idleTimeout: shared.configuration.idleTimeout, now: .now())
    }

    // MARK: Connection

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { activate(context: context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        activate(context: context)
        context.fireChannelActive()
    }

    private func activate(context: ChannelHandlerContext) {
        guard idleTimer == nil else { return }
        armIdleTimer(context: context, at: machine.activated(now: context.eventLoop.now))
    }

    func channelInactive(context: ChannelHandlerContext) {
        machine.inactive()
        abandonExchange()
        idleTimer?.cancel()
        idleTimer = nil
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        abandonExchange()
        idleTimer?.cancel()
        idleTimer = nil
    }

    private func armIdleTimer(context: ChannelHandlerContext, at deadline: NIODeadline) {
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        idleTimer = context.eventLoop.scheduleTask(deadline: deadline) {
            let (handler, context) = loopBound.value
            handler.idleTimerFired(context: context)
        }
    }

    private func idleTimerFired(context: ChannelHandlerContext) {
        switch machine.timerFired(now: context.eventLoop.now) {
        case .none:
            idleTimer = nil
        case .close:
            idleTimer = nil
            shared.logger.debug("closing an idle connection")
            context.close(promise: nil)
        case .rearm(let deadline):
            armIdleTimer(context: context, at: deadline)
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, event == .inputClosed {
            if machine.inputClosed() { context.close(promise: nil) }
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard let parseError = error as? HTTPParserError else {
            shared.logger.debug("closing a connection after an error", metadata: ["error": "\(error)"])
            machine.inactive()
            context.close(promise: nil)
            return
        }
        switch machine.parseFailed() {
        case .answer:
            writeProblem(parseError == .headerOverflow ? .headersTooLarge : .badRequest, isHead: false, context: context)
        case .failStream:
            if let exchange {
                failExchange(exchange, with: .badRequest, reason: "the request body is malformed (\(parseError))")
            } else {
                context.close(promise: nil)
            }
        case .close:
            context.close(promise: nil)
        case .none:
            break
        }
    }

    // MARK: Backpressure

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        switch machine.writabilityChanged(context.channel.isWritable) {
        case .none:
            break
        case .read:
            context.read()
        case .resume(let head, let read):
            handle(head, hasBody: false, context: context)
            if read { context.read() }
        }
        if context.channel.isWritable { exchange?.connection?.handler.resumeReads() }
        context.fireChannelWritabilityChanged()
    }

    func read(context: ChannelHandlerContext) {
        if machine.readRequested() { context.read() }
    }

    // MARK: Requests

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            observed.began(head, now: context.eventLoop.now, keepHead: shared.monitor.keepsHeads)
            // After CONNECT or an upgrade request the decoder stops parsing (the bytes that
            // follow belong to another protocol): answer, then close.
            let keepAlive = head.isKeepAlive && head.method != .CONNECT && !head.headers.contains(name: "upgrade")
            table = shared.routes.current
            requestPath = RequestPath.normalize(head.uri)
            headProblem = Self.problem(inHead: head)
            requestIsHTTP10 = head.version == .http1_0
            forwardAuthBodyBytes = nil
            let hasBody = Self.hasBody(head)
            var proxied: (route: Route, upstream: Upstream, path: String)? = nil
            var readsBodyAway = false
            if headProblem == nil, let path = requestPath {
                switch resolve(path) {
                case .route(let route):
                    if case .upstream(let upstream) = route.action, route.methods?.contains(head.method) ?? true, head.method != .CONNECT {
                        proxied = (route, upstream, path)
                    }
                case .forwardAuth where hasBody:
                    // A question with a small body is answered once the body is read away;
                    // one announced too large is refused at once (``forwardAuth``).
                    let length = head.headers.first(name: "content-length").flatMap { Int($0) }
                    if length.map({ $0 <= Self.forwardAuthMaxBodyBytes }) ?? true {
                        readsBodyAway = true
                        forwardAuthBodyBytes = 0
                    }
                default:
                    break
                }
            }
            switch machine.headReceived(head, keepAlive: keepAlive, hasBody: hasBody && !readsBodyAway, streams: proxied != nil) {
            case .answerNow(let head):
                // Answer now and close rather than read a body no API wants.
                handle(head, hasBody: true, context: context)
            case .decideNow(let head):
                if let proxied {
                    startProxy(
                        head, route: proxied.route, upstream: proxied.upstream, path: proxied.path, hasBody: hasBody, context: context)
                }
            case .wait, .ignore:
                break
            }
        case .body(let buffer):
            if exchange != nil {
                proxyBody(buffer, context: context)
            } else if let read = forwardAuthBodyBytes {
                forwardAuthBodyBytes = read + buffer.readableBytes
                if read + buffer.readableBytes > Self.forwardAuthMaxBodyBytes {
                    // A chunked body that outgrew the bound: refused before it was decided.
                    forwardAuthBodyBytes = nil
                    machine.bodyRefused()
                    writeProblem(.bodyTooLarge, isHead: false, context: context)
                }
            }
        case .end:
            switch machine.endReceived() {
            case .handle(let head):
                handle(head, hasBody: false, context: context)
            case .handleLater(let head):
                // Deep in a pipelined burst: go on from a fresh stack rather than let the
                // nesting grow with the burst.
                let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
                context.eventLoop.execute {
                    let (handler, context) = loopBound.value
                    guard handler.machine.canHandleDeferred else { return }
                    handler.handle(head, hasBody: false, context: context)
                }
            case .close:
                context.close(promise: nil)
            case .forwardEnd:
                proxyEnd(context: context)
            case .park, .ignore:
                break
            }
        }
    }

    private static func hasBody(_ head: HTTPRequestHead) -> Bool {
        if head.headers.contains(name: "transfer-encoding") { return true }
        if let length = head.headers.first(name: "content-length") { return length != "0" }
        return false
    }

    /// The refusal a head earns by itself (RFC 9112 section 3.2): an HTTP/1.1 request
    /// without `Host`, any request with two; and an HTTP/1.0 request with
    /// `Transfer-Encoding`, a framing 1.0 does not have (section 6.1).
    static func problem(inHead head: HTTPRequestHead) -> Problem? {
        var hosts = 0
        var transferEncoding = false
        for field in head.headers {
            switch field.name.utf8.count {
            case 4 where ProxyHeaders.name(field.name, is: "host"): hosts += 1
            case 17 where ProxyHeaders.name(field.name, is: "transfer-encoding"): transferEncoding = true
            default: break
            }
        }
        if hosts > 1 || (hosts == 0 && head.version != .http1_0) { return .badRequest }
        if transferEncoding && head.version == .http1_0 { return .badRequest }
        return nil
    }

    /// The largest body a forward-auth question may carry: it is read away, never used.
    static var forwardAuthMaxBodyBytes: Int { 64 * 1024 }

    /// Where a normalized path goes.
    enum Target {
        case health, ready
        /// A forward-auth endpoint: its form, and the path it is mounted at (`auth`,
        /// `auth/nginx`); `below`: whether the request's path goes on below it.
        case forwardAuth(ForwardAuthForm, mount: Substring, below: Bool)
        case route(Route)
        case none
    }

    func resolve(_ path: String) -> Target {
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

    private func handle(_ head: HTTPRequestHead, hasBody: Bool, context: ChannelHandlerContext) {
        let isHead = head.method == .HEAD
        if let problem = headProblem {
            return writeProblem(problem, isHead: isHead, context: context)
        }
        guard let path = requestPath else {
            // Envoy asks about the root as `/auth/envoy/`, a path that is otherwise refused.
            if let auth = table.forwardAuthPath, head.uri == "/\(auth)/envoy/" || head.uri.hasPrefix("/\(auth)/envoy/?") {
                return forwardAuth(head, form: .envoy, mount: Substring("\(auth)/envoy"), below: true, hasBody: hasBody, context: context)
            }
            return writeProblem(.badPath, isHead: isHead, context: context)
        }
        let route: Route
        switch resolve(path) {
        case .none:
            return writeProblem(.notFound, isHead: isHead, context: context)
        case .health, .ready:
            guard head.method == .GET || isHead else {
                return writeProblem(.methodNotAllowed, allow: "GET, HEAD", isHead: false, context: context)
            }
            if hasBody { return writeProblem(.bodyNotAllowed, isHead: isHead, context: context) }
            observed.outcome = .health
            if path == "healthz" {
                return write(status: .ok, headers: Self.jsonHeaders(), body: shared.healthBody, isHead: isHead, context: context)
            }
            return checkReadiness(isHead: isHead, context: context)
        case .forwardAuth(let form, let mount, let below):
            return forwardAuth(head, form: form, mount: mount, below: below, hasBody: hasBody, context: context)
        case .route(let found):
            route = found
        }
        observe(route)
        guard route.methods?.contains(head.method) ?? true else {
            return writeProblem(.methodNotAllowed, allow: route.allowField, isHead: false, context: context)
        }
        // Upstream routes stream from the head on; a request here is for a fixed answer.
        if hasBody {
            return writeProblem(.bodyNotAllowed, isHead: isHead, context: context)
        }
        guard case .fixed(let fixed) = route.action, let body = table.fixedBodies[route.name] else {
            return writeProblem(.notFound, isHead: isHead, context: context)
        }
        decide(head.headers, route: route, path: path, isHead: isHead, context: context) { _, _, headers in
            var headers = headers
            headers.add(name: "content-type", value: fixed.contentType)
            self.write(status: HTTPResponseStatus(statusCode: fixed.status), headers: headers, body: body, isHead: isHead, context: context)
        }
    }

    /// Checks the key, asks the store, and answers any refusal; `admitted` runs on an
    /// admission with the request as the store decided it (for a give-back) and the
    /// RateLimit fields ready.
    func decide(
        _ requestHeaders: HTTPHeaders,
        route: Route,
        path: String,
        isHead: Bool,
        context: ChannelHandlerContext,
        admitted: @escaping (AdmissionRequest, AdmissionDecision, HTTPHeaders) -> Void
    ) {
        guard let secret = Self.secret(in: requestHeaders) else {
            return writeProblem(.missingAPIKey, isHead: isHead, context: context)
        }
        // A mistyped or forged `tg_` key fails its checksum: refused without a store lookup.
        guard secret.utf8.count <= KeyIssuer.maximumSecretLength, KeySecret.isPlausible(secret) else {
            return writeProblem(.invalidAPIKey, isHead: isHead, context: context)
        }
        let request = AdmissionRequest(
            digest: KeyDigest(secret: secret), api: route.name, path: route.scopePath(for: path), now: shared.clock.now)
        let promise = context.eventLoop.makePromise(of: AdmissionDecision.self)
        shared.store.admit(request, promise: promise)
        promise.futureResult.assumeIsolated().whenComplete { result in
            switch result {
            case .success(let decision):
                self.observed.keyID = decision.keyID
                if let id = decision.keyID, self.shared.logger.logLevel <= .debug {
                    self.shared.logger.debug(
                        "decided", metadata: ["key": "\(id)", "api": "\(route.name)", "outcome": "\(decision.outcome.rawValue)"])
                }
                var headers = HTTPHeaders()
                headers.reserveCapacity(5)
                Self.addRateLimitFields(decision.limits, to: &headers)
                if decision.outcome == .admitted {
                    // A proxied request keeps it when forwarded; an upstream failure replaces it.
                    self.observed.outcome = .admitted
                    return admitted(request, decision, headers)
                }
                self.refuse(decision, headers: headers, isHead: isHead, context: context)
            case .failure(let error):
                self.shared.logger.error("the store failed a decision", metadata: ["error": "\(error)"])
                self.writeProblem(.storeUnavailable, isHead: isHead, context: context)
            }
        }
    }

    /// Names the request's API for metrics (an index) and the access log (the name).
    func observe(_ route: Route) {
        observed.api = shared.monitor.apiIndex(of: route.name)
        if shared.monitor.keepsHeads { observed.apiName = route.name }
    }

    private func checkReadiness(isHead: Bool, context: ChannelHandlerContext) {
        let store = shared.store
        let promise = context.eventLoop.makePromise(of: Bool.self)
        promise.completeWithTask { await store.isReady() }
        promise.futureResult.assumeIsolated().whenSuccess { ready in
            self.write(
                status: ready ? .ok : .serviceUnavailable,
                headers: Self.jsonHeaders(),
                body: ready ? self.shared.healthBody : self.shared.notReadyBody,
                isHead: isHead,
                context: context
            )
        }
    }

    private func refuse(_ decision: AdmissionDecision, headers: HTTPHeaders, isHead: Bool, context: ChannelHandlerContext) {
        var headers = headers
        let problem = Problem(decision.outcome)
        if problem == .quotaExceeded {
            // The detail says when to retry only when Retry-After is there to say it.
            let prefix: ByteBuffer
            if let retryAfter = decision.retryAfter {
                headers.add(name: "retry-after", value: String(retryAfter))
                prefix = shared.problems[.quotaExceeded]!
            } else {
                prefix = shared.quotaNeverResetsPrefix
            }
            let body = Problem.quotaExceededBody(
                prefix: prefix,
                policies: decision.limits.filter(\.isSpent).map(\.policy)
            )
            return writeProblem(problem, body: body, headers: headers, isHead: isHead, context: context)
        }
        writeProblem(problem, headers: headers, isHead: isHead, context: context)
    }

    /// The fields of draft-ietf-httpapi-ratelimit-headers-10, one list item per limit.
    static func addRateLimitFields(_ limits: [LimitStatus], to headers: inout HTTPHeaders) {
        guard !limits.isEmpty else { return }
        var policy = ""
        var current = ""
        for limit in limits {
            if !policy.isEmpty {
                policy += ", "
                current += ", "
            }
            policy += "\"\(limit.policy)\";q=\(limit.quota)"
            if let window = limit.windowSeconds { policy += ";w=\(window)" }
            current += "\"\(limit.policy)\";r=\(limit.remaining)"
            if let reset = limit.resetSeconds { current += ";t=\(reset)" }
        }
        headers.add(name: "ratelimit-policy", value: policy)
        headers.add(name: "ratelimit", value: current)
    }

    /// The key from `Authorization: Bearer`, `X-API-Key` or `token`, first found wins.
    static func secret(in headers: HTTPHeaders) -> String? {
        if let authorization = headers.first(name: "authorization") {
            let utf8 = authorization.utf8
            if utf8.count > 7, utf8.prefix(6).elementsEqual("bearer".utf8, by: { $0 | 0x20 == $1 }),
                utf8[utf8.index(utf8.startIndex, offsetBy: 6)] == UInt8(ascii: " ")
            {
                let token = authorization.dropFirst(7).drop(while: { $0 == " " })
                if !token.isEmpty { return String(token) }
            }
        }
        if let key = headers.first(name: "x-api-key"), !key.isEmpty { return key }
        if let key = headers.first(name: "token"), !key.isEmpty { return key }
        return nil
    }

    // MARK: Writing

    private static func jsonHeaders() -> HTTPHeaders {
        ["content-type": "application/json"]
    }

    func writeProblem(
        _ problem: Problem,
        allow: String = "GET, HEAD",
        body: ByteBuffer? = nil,
        headers: HTTPHeaders = HTTPHeaders(),
        isHead: Bool,
        context: ChannelHandlerContext
    ) {
        observed.outcome = RequestOutcome(problem)
        var headers = headers
        headers.add(name: "content-type", value: "application/problem+json")
        switch problem {
        case .missingAPIKey: headers.add(name: "www-authenticate", value: "Bearer")
        case .invalidAPIKey, .keyRevoked, .keyExpired: headers.add(name: "www-authenticate", value: "Bearer error=\"invalid_token\"")
        case .methodNotAllowed: headers.add(name: "allow", value: allow)
        case .badRequest, .headersTooLarge, .bodyNotAllowed, .bodyTooLarge: machine.closeAfterAnswer()
        default: break
        }
        write(status: problem.status, headers: headers, body: body ?? shared.problems[problem]!, isHead: isHead, context: context)
    }

    func write(status: HTTPResponseStatus, headers: HTTPHeaders, body: ByteBuffer, isHead: Bool, context: ChannelHandlerContext) {
        // A whole answer (a refusal, 502, 504) ends any forwarding under way.
        if exchange != nil { abandonExchange() }
        let now = context.eventLoop.now
        let action = machine.willWriteAnswer(now: now)
        // Before the end is written: that may deliver the next pipelined request at once.
        shared.monitor.answered(&observed, status: status, now: now, clock: shared.clock)
        if action == .drop { return }
        var headers = headers
        headers.add(name: "content-length", value: String(body.readableBytes))
        headers.add(name: "date", value: dateHeader.value(at: shared.clock.now))
        // A shared cache must never store an answer: it would serve it to other callers
        // without their key and without counting it. Answers about a key are private too.
        headers.add(name: "cache-control", value: headers.contains(name: "ratelimit-policy") ? "private, no-store" : "no-store")
        if case .close = action {
            headers.add(name: "connection", value: "close")
        } else if requestIsHTTP10 {
            headers.add(name: "connection", value: "keep-alive")
        }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
        if !isHead { context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil) }
        endAnswer(action, context: context)
    }

    /// Writes an answer's end and carries out the machine's `action` for it.
    func endAnswer(_ action: ConnectionStateMachine<NIODeadline, HTTPRequestHead>.WriteAction, context: ChannelHandlerContext) {
        switch action {
        case .keepOpen:
            // Writing the end makes the pipelining handler deliver the next buffered
            // request at once, re-entering `channelRead`.
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
            machine.answerWritten()
        case .close(let outputOnly):
            let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
            context.writeAndFlush(wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in
                loopBound.value.close(mode: outputOnly ? .output : .all, promise: nil)
            }
            // A refused body still arriving is read away (it may have been held).
            if outputOnly, machine.bodyWanted(true) { context.read() }
        case .drop:
            break
        }
    }
}
