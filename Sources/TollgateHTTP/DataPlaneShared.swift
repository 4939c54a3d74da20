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
    /// Every refusal, prebuilt: its status line and fixed fields, and its body.
    let problems: [Problem: PrebuiltAnswer]
    /// Upstream failures on a route with `give_back_on_5xx`, whose text says the unit goes back.
    let givenBackProblems: [Problem: PrebuiltAnswer]
    /// The `quota_exceeded` body's start for a spent limit that never resets (no `Retry-After`).
    let quotaNeverResetsPrefix = ByteBuffer(string: Problem.quotaNeverResetsPrefix)
    let health: PrebuiltAnswer
    let notReady: PrebuiltAnswer
    let ready: PrebuiltAnswer
    /// Metrics and the access log; its API table is the routes in force at start.
    let monitor: DataPlaneMonitor

    init(store: Store, clock: Clock, configuration: DataPlaneConfiguration, logger: Logger, upstreams: UpstreamConnector = .tcp) {
        self.store = store
        self.clock = clock
        self.logger = logger
        self.configuration = configuration
        self.routes = configuration.routes
        self.pools = UpstreamPools(logger: logger, connector: upstreams)
        self.monitor = DataPlaneMonitor(routes: configuration.routes.current, monitoring: configuration.monitoring)
        self.problems = Dictionary(uniqueKeysWithValues: Problem.allCases.map { ($0, PrebuiltAnswer(problem: $0, body: $0.prebuiltBody)) })
        self.givenBackProblems = Dictionary(
            uniqueKeysWithValues: Problem.allCases.compactMap { problem in
                problem.prebuiltGivenBackBody.map { (problem, PrebuiltAnswer(problem: problem, body: $0)) }
            })
        health = PrebuiltAnswer(status: .ok, contentType: "application/json", body: "{\"status\":\"ok\"}")
        ready = health
        notReady = PrebuiltAnswer(status: .serviceUnavailable, contentType: "application/json", body: "{\"status\":\"unavailable\"}")
    }
}

/// An answer made once: its status line and fixed fields, and its body. Writing one adds
/// only the fields that change (RateLimit, length, date, connection).
struct PrebuiltAnswer: Sendable {
    let status: HTTPResponseStatus
    /// `HTTP/1.1 ...\r\n` and the fixed fields, each ending in `\r\n`.
    let head: ByteBuffer
    let body: ByteBuffer

    init(status: HTTPResponseStatus, contentType: String, extraFields: String = "", body: String) {
        self.status = status
        head = ByteBuffer(string: AnswerEncoder.statusLine(status) + "content-type: \(contentType)\r\n" + extraFields)
        self.body = ByteBuffer(string: body)
    }

    init(problem: Problem, body: String) {
        let extra: String
        switch problem {
        case .missingAPIKey: extra = "www-authenticate: Bearer\r\n"
        case .invalidAPIKey, .keyRevoked, .keyExpired: extra = "www-authenticate: Bearer error=\"invalid_token\"\r\n"
        default: extra = ""
        }
        self.init(status: problem.status, contentType: "application/problem+json", extraFields: extra, body: body)
    }

    init(fixed answer: FixedAnswer) {
        self.init(status: HTTPResponseStatus(statusCode: answer.status), contentType: answer.contentType, body: answer.body)
    }
}
