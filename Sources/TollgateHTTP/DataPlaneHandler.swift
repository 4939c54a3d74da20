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
    /// Route name to its prebuilt `200` body and its index in the monitor's API table.
    let routes: [String: (body: ByteBuffer, api: Int)]
    /// Problem to its prebuilt body (for `quota_exceeded`, the part before the policies).
    let problems: [Problem: ByteBuffer]
    /// The `quota_exceeded` prefix for a spent limit that never resets (no `Retry-After`).
    let quotaNeverResetsPrefix = ByteBuffer(string: Problem.quotaNeverResetsPrefix)
    let healthBody = ByteBuffer(string: "{\"status\":\"ok\"}")
    let notReadyBody = ByteBuffer(string: "{\"status\":\"unavailable\"}")
    let monitor: DataPlaneMonitor

    init(store: Store, clock: Clock, configuration: DataPlaneConfiguration, logger: Logger) {
        self.store = store
        self.clock = clock
        self.logger = logger
        self.configuration = configuration
        self.routes = Dictionary(
            configuration.routes.enumerated().map {
                ($1.name, (body: ByteBuffer(string: $1.body), api: DataPlaneMonitor.apiIndex(ofRouteAt: $0)))
            },
            uniquingKeysWith: { a, _ in a })
        self.monitor = DataPlaneMonitor(routes: configuration.routes, monitoring: configuration.monitoring)
        self.problems = Dictionary(uniqueKeysWithValues: Problem.allCases.map { ($0, ByteBuffer(string: $0.prebuiltBody)) })
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

    private let shared: DataPlaneShared<Store, Clock>
    private var machine: ConnectionStateMachine<NIODeadline, HTTPRequestHead>
    private var idleTimer: Scheduled<Void>?
    private var dateHeader = DateHeader()
    /// The request being answered, for metrics and the access log.
    private var observed = ObservedRequest()

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
        idleTimer?.cancel()
        idleTimer = nil
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
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
            switch machine.headReceived(head, keepAlive: keepAlive, hasBody: Self.hasBody(head)) {
            case .answerNow(let head):
                // Answer now and close rather than read a body no API wants.
                handle(head, hasBody: true, context: context)
            case .wait, .ignore:
                break
            }
        case .body:
            break
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

    private func handle(_ head: HTTPRequestHead, hasBody: Bool, context: ChannelHandlerContext) {
        let isHead = head.method == .HEAD
        guard let path = RequestPath.normalize(head.uri) else {
            return writeProblem(.badPath, isHead: isHead, context: context)
        }
        let route = shared.routes[path]
        let routeBody = route?.body
        observed.api = route?.api ?? 0
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
        if isHealth { observed.outcome = .health }
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
        observed.keyID = decision.keyID
        if let id = decision.keyID, shared.logger.logLevel <= .debug {
            shared.logger.debug("decided", metadata: ["key": "\(id)", "api": "\(api)", "outcome": "\(decision.outcome.rawValue)"])
        }
        var headers = HTTPHeaders()
        headers.reserveCapacity(5)
        Self.addRateLimitFields(decision.limits, to: &headers)
        if decision.outcome == .admitted {
            observed.outcome = .admitted
            headers.add(name: "content-type", value: "text/plain; charset=utf-8")
            return write(status: .ok, headers: headers, body: body, isHead: isHead, context: context)
        }
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

    private func writeProblem(
        _ problem: Problem,
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
        case .methodNotAllowed: headers.add(name: "allow", value: "GET, HEAD")
        case .badRequest, .headersTooLarge, .bodyNotAllowed: machine.closeAfterAnswer()
        default: break
        }
        write(status: problem.status, headers: headers, body: body ?? shared.problems[problem]!, isHead: isHead, context: context)
    }

    private func write(status: HTTPResponseStatus, headers: HTTPHeaders, body: ByteBuffer, isHead: Bool, context: ChannelHandlerContext) {
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
        if case .close = action { headers.add(name: "connection", value: "close") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
        if !isHead { context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil) }
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
        case .drop:
            break
        }
    }
}
