import ArgumentParser
import Logging
import Prometheus
import TollgateAdmin
import TollgateCore
import TollgateHTTP

/// `serve`'s options for the access log; metrics are always on (`GET /metrics` on the
/// control plane) since they cost under the 3 % budget of the data plane.
struct MonitoringOptions: ParsableArguments {
    @Option(
        name: .customLong("access-log"),
        help: ArgumentHelp(
            "Write one line per data-plane request to PATH (appended to; - for standard output). Off by default.",
            valueName: "path"
        )
    )
    var accessLog: String?

    @Option(name: .customLong("log-format"), help: "The access log's line format: text or json.")
    var logFormat = "text"

    func validate() throws {
        guard AccessLogFormat(rawValue: logFormat) != nil else {
            throw ValidationError("--log-format must be text or json")
        }
        if accessLog == "" { throw ValidationError("--access-log needs a path, or - for standard output") }
    }
}

/// The process's one metrics registry and what records into it.
struct Telemetry {
    let registry = PrometheusCollectorRegistry()
    let factory: PrometheusMetricsFactory

    init() {
        factory = MetricsEndpoint.metricsFactory(registry: registry)
    }

    func storeMetrics(_ store: String) -> StoreMetrics {
        StoreMetrics(store: store, factory: factory)
    }

    /// The access log the options ask for, opened now so that a bad path fails at start-up.
    func accessLog(_ options: MonitoringOptions, logger: Logger) throws(TollgateError) -> AccessLog? {
        guard let path = options.accessLog else { return nil }
        let configuration = AccessLog.Configuration(
            destination: path == "-" ? .standardOutput : .file(path),
            format: AccessLogFormat(rawValue: options.logFormat) ?? .text
        )
        return try AccessLog(configuration: configuration, metricsFactory: factory, logger: logger)
    }
}
