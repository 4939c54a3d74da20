import CoreMetrics
import NIOCore
import NIOHTTP1
import TollgateCore

/// What the data plane reports about its requests: metrics, an access log, both or neither.
public struct DataPlaneMonitoring: Sendable {
    /// Where the request counters and the latency histogram are made, once, at start-up;
    /// `nil` records none. Pass a factory you own (a Prometheus registry's), never rely on
    /// a bootstrapped global `MetricsSystem`.
    public var metricsFactory: (any MetricsFactory)?
    /// One line per request, written off the event loop; `nil` (the default) logs none.
    public var accessLog: AccessLog?

    public init(metricsFactory: (any MetricsFactory)? = nil, accessLog: AccessLog? = nil) {
        self.metricsFactory = metricsFactory
        self.accessLog = accessLog
    }
}

/// The request counters and latency histograms, made once: a table of counters indexed by
/// (API, outcome), so that counting a request is an array index and an atomic add, with
/// no label strings built or looked up per request (as Hummingbird's MetricsMiddleware
/// makes its handles once).
final class DataPlaneMetrics: Sendable {
    /// `requests[api * outcomes + outcome]`; API 0 is `none` (no route matched).
    private let requests: [Counter]
    /// One histogram per outcome: an admitted request waits for its commit, a refusal
    /// does not, and one histogram would blur the two.
    private let durations: [Timer]
    /// `givenBack[api]`: give-backs asked of the store for admitted requests their upstream
    /// failed (routes with `give_back_on_5xx`), not units returned: the store may give
    /// nothing back (a usage reset or key edit since admission, a counter in a later window,
    /// the key no longer held, Redis not answering), and it is not awaited. No key label,
    /// like every other.
    private let givenBack: [Counter]
    private static let outcomes = RequestOutcome.allCases.count

    init(apiNames: [String], factory: any MetricsFactory) {
        var requests: [Counter] = []
        requests.reserveCapacity(apiNames.count * Self.outcomes)
        for api in apiNames {
            for outcome in RequestOutcome.allCases {
                requests.append(
                    Counter(label: "tollgate_requests_total", dimensions: [("api", api), ("outcome", outcome.name)], factory: factory))
            }
        }
        self.requests = requests
        givenBack = apiNames.map { Counter(label: "tollgate_units_given_back_total", dimensions: [("api", $0)], factory: factory) }
        durations = RequestOutcome.allCases.map {
            Timer(label: "tollgate_request_duration_seconds", dimensions: [("outcome", $0.name)], factory: factory)
        }
    }

    @inline(__always)
    func record(api: Int, outcome: RequestOutcome, nanoseconds: Int64) {
        let outcome = Int(outcome.rawValue)
        requests[api &* Self.outcomes &+ outcome].increment()
        durations[outcome].recordNanoseconds(nanoseconds)
    }

    func gaveBack(api: Int) {
        givenBack[api].increment()
    }
}

/// One request as the handler sees it from its head to its answer: the few facts metrics
/// and the access log need, set at the points where they become known.
struct ObservedRequest {
    /// When the head arrived; `nil` for an answer to bytes that never made a request.
    var start: NIODeadline?
    /// Index into the monitor's API names; 0 is `none`.
    var api = 0
    /// The route's name, kept only while an access log is on (a name added by a reload
    /// is counted as `other` but logged by its name).
    var apiName: String?
    var outcome = RequestOutcome.other
    var keyID: KeyID?
    /// Kept only while an access log is on.
    var method: HTTPMethod?
    var uri: String?

    init() {}

    mutating func began(_ head: HTTPRequestHead, now: NIODeadline, keepHead: Bool) {
        self = ObservedRequest()
        start = now
        if keepHead {
            method = head.method
            uri = head.uri
        }
    }
}

/// Records each answered request into the metrics table and the access log.
///
/// The `api` label values are fixed when the data plane starts: `none` (no route matched),
/// then the name of every route in the table in force at start, in the table's order
/// (longest prefix first, each name once), then `other`. Routes are reloadable (`SIGHUP`),
/// metrics handles are not: a name that only a later reload brings is counted under
/// `other` (the access log still names it), so the label set stays bounded and counting
/// stays an array index. A restart picks the new names up.
final class DataPlaneMonitor: Sendable {
    /// `none`, the start-up routes' names, then `other`: the `api` label values.
    let apiNames: [String]
    /// Route name to its index in `apiNames`.
    private let apiIndices: [String: Int]
    let metrics: DataPlaneMetrics?
    let accessLog: AccessLog?
    var keepsHeads: Bool { accessLog != nil }

    init(routes: RouteTable, monitoring: DataPlaneMonitoring) {
        var apiNames = ["none"]
        var apiIndices: [String: Int] = [:]
        for route in routes.routes where apiIndices[route.name] == nil {
            apiIndices[route.name] = apiNames.count
            apiNames.append(route.name)
        }
        apiNames.append("other")
        self.apiNames = apiNames
        self.apiIndices = apiIndices
        metrics = monitoring.metricsFactory.map { DataPlaneMetrics(apiNames: apiNames, factory: $0) }
        accessLog = monitoring.accessLog
    }

    /// The index of the API named `name` in `apiNames`; `other` for a name added by a reload.
    @inline(__always)
    func apiIndex(of name: String) -> Int { apiIndices[name] ?? apiNames.count - 1 }

    /// A give-back was asked of the store for an admitted request its upstream failed
    /// (whether the store gave anything back is not known here).
    func gaveBack(api: Int) {
        metrics?.gaveBack(api: api)
    }

    /// The answer to `observed` is being written (or was decided for a connection that
    /// has closed): count it, time it, log it, and start the next request afresh.
    @inline(__always)
    func answered(_ observed: inout ObservedRequest, status: HTTPResponseStatus, now: NIODeadline, clock: some WallClock) {
        let nanoseconds = observed.start.map { (now - $0).nanoseconds } ?? 0
        metrics?.record(api: observed.api, outcome: observed.outcome, nanoseconds: nanoseconds)
        if let accessLog {
            accessLog.append(
                AccessLogRecord(
                    time: clock.now,
                    keyID: observed.keyID,
                    api: observed.apiName ?? (observed.api == 0 ? nil : apiNames[observed.api]),
                    method: observed.method,
                    uri: observed.uri,
                    status: status.code,
                    outcome: observed.outcome,
                    nanoseconds: nanoseconds
                )
            )
        }
        observed = ObservedRequest()
    }
}
