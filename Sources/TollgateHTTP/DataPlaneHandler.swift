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
    /// Route name to its prebuilt `200` body.
    let routes: [String: ByteBuffer]
    /// Problem to its prebuilt body (for `quota_exceeded`, the part before the policies).
    let problems: [Problem: ByteBuffer]
    let healthBody = ByteBuffer(string: "{\"status\":\"ok\"}")
    let notReadyBody = ByteBuffer(string: "{\"status\":\"unavailable\"}")

    init(store: Store, clock: Clock, configuration: DataPlaneConfiguration, logger: Logger) {
        self.store = store
        self.clock = clock
        self.logger = logger
        self.configuration = configuration
        self.routes = Dictionary(configuration.routes.map { ($0.name, ByteBuffer(string: $0.body)) }, uniquingKeysWith: { a, _ in a })
        self.problems = Dictionary(uniqueKeysWithValues: Problem.allCases.map { ($0, ByteBuffer(string: $0.prebuiltBody)) })
    }
}

/// The data plane: one handler per connection, after NIO's HTTP/1.1 server pipeline (which
/// keeps pipelined answers in order), deciding every request on the event loop.
///
/// For a key the store holds, the decision costs a digest and a dictionary lookup under a
/// short lock; the answer leaves when the store completes the promise (for SQLite, after
/// the group commit that made the usage durable).
final class DataPlaneHandler<Store: KeyStore, Clock: WallClock>: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private enum State {
        /// Waiting for a request head.
        case idle
        /// Head received, waiting for its end.
        case receiving(HTTPRequestHead)
        /// Answered early (a request with a body); the rest is discarded and the connection closes.
        case discarding
        /// Waiting for the store's decision or readiness.
        case deciding
        case closed
    }

    private let shared: DataPlaneShared<Store, Clock>
    private var state = State.idle
    private var keepAlive = true
    /// How deep answers written inside other answers' writes are nested (see `channelRead`).
    private var nesting = 0
    private var idleSince = NIODeadline.now()
    private var idleTimer: Scheduled<Void>?
    private var dateHeader = DateHeader()

    init(shared: DataPlaneShared<Store, Clock>) {
        self.shared = shared
    }

    // MARK: Connection

    func channelActive(context: ChannelHandlerContext) {
        idleSince = .now()
        armIdleTimer(context: context, at: idleSince + shared.configuration.idleTimeout)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        state = .closed
        idleTimer?.cancel()
        idleTimer = nil
        context.fireChannelInactive()
    }

    /// One timer per connection, re-armed lazily: a request does not reschedule it, the
    /// timer checks on firing whether the connection has been idle long enough.
    private func armIdleTimer(context: ChannelHandlerContext, at deadline: NIODeadline) {
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        idleTimer = context.eventLoop.scheduleTask(deadline: deadline) {
            let (handler, context) = loopBound.value
            handler.idleTimerFired(context: context)
        }
    }

    private func idleTimerFired(context: ChannelHandlerContext) {
        let timeout = shared.configuration.idleTimeout
        switch state {
        case .closed:
            return
        case .idle, .receiving, .discarding:
            // A request head still incomplete counts as idle: its header fields must
            // arrive within the timeout too; so does the rest of a refused body.
            let deadline = idleSince + timeout
            if NIODeadline.now() >= deadline {
                shared.logger.debug("closing an idle connection")
                state = .closed
                context.close(promise: nil)
            } else {
                armIdleTimer(context: context, at: deadline)
            }
        case .deciding:
            armIdleTimer(context: context, at: .now() + timeout)
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, event == .inputClosed {
            switch state {
            case .idle, .discarding: close(context: context)
            default: keepAlive = false
            }
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // The decoder stops after a parse error; answer it if no answer is under way.
        switch state {
        case .idle:
            if let error = error as? HTTPParserError {
                keepAlive = false
                writeProblem(error == .headerOverflow ? .headersTooLarge : .badRequest, isHead: false, context: context)
            } else {
                close(context: context)
            }
        case .discarding:
            close(context: context)
        default:
            keepAlive = false
        }
    }

    // MARK: Requests

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            guard case .idle = state else { return }
            keepAlive = head.isKeepAlive
            if Self.hasBody(head) {
                // Answer now and close rather than read a body no API wants.
                keepAlive = false
                state = .discarding
                handle(head, hasBody: true, context: context)
            } else {
                state = .receiving(head)
            }
        case .body:
            break
        case .end:
            switch state {
            case .receiving(let head) where nesting >= Self.maximumNesting:
                // Each answer written at once makes NIO's pipelining handler deliver the next
                // buffered request inside that write: deep in a pipelined burst, go on from
                // a fresh stack rather than let the nesting grow with the burst.
                state = .deciding
                let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
                context.eventLoop.execute {
                    let (handler, context) = loopBound.value
                    if case .closed = handler.state { return }
                    handler.handle(head, hasBody: false, context: context)
                }
            case .receiving(let head):
                handle(head, hasBody: false, context: context)
            case .discarding:
                // The refused body has ended; the answer went out before it.
                close(context: context)
            default:
                break
            }
        }
    }

    static var maximumNesting: Int { 16 }

    private static func hasBody(_ head: HTTPRequestHead) -> Bool {
        if head.headers.contains(name: "transfer-encoding") { return true }
        if let length = head.headers.first(name: "content-length") { return length != "0" }
        return false
    }

    private func handle(_ head: HTTPRequestHead, hasBody: Bool, context: ChannelHandlerContext) {
        let isHead = head.method == .HEAD
        guard let path = RequestPath.normalize(head.uri) else {
            return writeProblem(.badPath, isHead: isHead, context: context)
        }
        let routeBody = shared.routes[path]
        let isHealth = path == "healthz" || path == "readyz"
        guard routeBody != nil || isHealth else {
            return writeProblem(.notFound, isHead: isHead, context: context)
        }
        guard head.method == .GET || isHead else {
            return writeProblem(.methodNotAllowed, isHead: false, context: context)
        }
        if hasBody {
            return writeProblem(.bodyNotAllowed, isHead: isHead, context: context)
        }
        if path == "healthz" {
            return write(status: .ok, headers: Self.jsonHeaders(), body: shared.healthBody, isHead: isHead, context: context)
        }
        guard let routeBody else { return checkReadiness(isHead: isHead, context: context) }

        guard let secret = Self.secret(in: head.headers) else {
            return writeProblem(.missingAPIKey, isHead: isHead, context: context)
        }
        // A mistyped or forged `tg_` key fails its checksum: refused without a store lookup.
        guard secret.utf8.count <= KeyIssuer.maximumSecretLength, KeySecret.isPlausible(secret) else {
            return writeProblem(.invalidAPIKey, isHead: isHead, context: context)
        }
        let request = AdmissionRequest(digest: KeyDigest(secret: secret), api: path, path: path, now: shared.clock.now)
        let promise = context.eventLoop.makePromise(of: AdmissionDecision.self)
        state = .deciding
        shared.store.admit(request, promise: promise)
        promise.futureResult.assumeIsolated().whenComplete { result in
            switch result {
            case .success(let decision):
                self.answer(decision, api: path, body: routeBody, isHead: isHead, context: context)
            case .failure(let error):
                self.shared.logger.error("the store failed a decision", metadata: ["error": "\(error)"])
                self.writeProblem(.storeUnavailable, isHead: isHead, context: context)
            }
        }
    }

    private func checkReadiness(isHead: Bool, context: ChannelHandlerContext) {
        state = .deciding
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

    private func answer(_ decision: AdmissionDecision, api: String, body: ByteBuffer, isHead: Bool, context: ChannelHandlerContext) {
        if let id = decision.keyID, shared.logger.logLevel <= .debug {
            shared.logger.debug("decided", metadata: ["key": "\(id)", "api": "\(api)", "outcome": "\(decision.outcome.rawValue)"])
        }
        var headers = HTTPHeaders()
        headers.reserveCapacity(5)
        Self.addRateLimitFields(decision.limits, to: &headers)
        if decision.outcome == .admitted {
            headers.add(name: "content-type", value: "text/plain; charset=utf-8")
            return write(status: .ok, headers: headers, body: body, isHead: isHead, context: context)
        }
        let problem = Problem(decision.outcome)
        if problem == .quotaExceeded {
            if let retryAfter = decision.retryAfter { headers.add(name: "retry-after", value: String(retryAfter)) }
            let body = Problem.quotaExceededBody(
                prefix: shared.problems[.quotaExceeded]!,
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

    private func writeProblem(
        _ problem: Problem,
        body: ByteBuffer? = nil,
        headers: HTTPHeaders = HTTPHeaders(),
        isHead: Bool,
        context: ChannelHandlerContext
    ) {
        var headers = headers
        headers.add(name: "content-type", value: "application/problem+json")
        switch problem {
        case .missingAPIKey: headers.add(name: "www-authenticate", value: "Bearer")
        case .invalidAPIKey, .keyRevoked, .keyExpired: headers.add(name: "www-authenticate", value: "Bearer error=\"invalid_token\"")
        case .methodNotAllowed: headers.add(name: "allow", value: "GET, HEAD")
        case .badRequest, .headersTooLarge, .bodyNotAllowed: keepAlive = false
        default: break
        }
        write(status: problem.status, headers: headers, body: body ?? shared.problems[problem]!, isHead: isHead, context: context)
    }

    private func write(status: HTTPResponseStatus, headers: HTTPHeaders, body: ByteBuffer, isHead: Bool, context: ChannelHandlerContext) {
        if case .closed = state { return }
        var headers = headers
        headers.add(name: "content-length", value: String(body.readableBytes))
        headers.add(name: "date", value: dateHeader.value(at: shared.clock.now))
        if !keepAlive { headers.add(name: "connection", value: "close") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
        if !isHead { context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil) }
        if keepAlive {
            // Idle before the end goes out: writing it makes the pipelining handler deliver
            // the next buffered request at once, re-entering `channelRead`.
            state = .idle
            idleSince = .now()
            nesting += 1
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
            nesting -= 1
        } else {
            // With a refused body still arriving, close only our side and read the rest away:
            // closing both would make the kernel reset the connection, which can destroy the
            // answer before the client reads it.
            var draining = false
            if case .discarding = state { draining = true } else { state = .closed }
            idleSince = .now()
            let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
            context.writeAndFlush(wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in
                loopBound.value.close(mode: draining ? .output : .all, promise: nil)
            }
        }
    }

    private func close(context: ChannelHandlerContext) {
        state = .closed
        context.close(promise: nil)
    }
}
