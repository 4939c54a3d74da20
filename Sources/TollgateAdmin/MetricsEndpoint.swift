import Hummingbird
import NIOCore
import Prometheus

/// `GET /metrics` on the control plane: everything recorded into one Prometheus registry,
/// in the Prometheus text format.
///
/// The registry belongs to whoever builds the server (the executable, or a test), and the
/// data plane and the store record into it through ``metricsFactory``: nothing here touches
/// the global `MetricsSystem`, so that tests each read their own numbers.
public struct MetricsEndpoint: Sendable {
    public let registry: PrometheusCollectorRegistry
    private let heldKeys: (gauge: Gauge, read: @Sendable () -> Int)?

    /// - Parameter heldKeys: how many keys the store holds in memory, read at each scrape
    ///   (`tollgate_keys_held`), so that the hot path never updates a gauge; without it
    ///   the gauge is left out rather than shown as 0.
    public init(registry: PrometheusCollectorRegistry, heldKeys: (@Sendable () -> Int)? = nil) {
        self.registry = registry
        let name = MetricNameDescriptor(
            metricName: "tollgate_keys_held", unitName: "", helpText: "Keys the store holds in memory, read at each scrape.")
        self.heldKeys = heldKeys.map { (registry.makeGauge(descriptor: name), $0) }
    }

    /// A factory over `registry` with Tollgate's buckets: latencies from 100 µs to 5 s
    /// (loopback answers take well under a millisecond; a durable commit a few), and commit
    /// batch sizes from 1 to 10,000 requests.
    public static func metricsFactory(registry: PrometheusCollectorRegistry) -> PrometheusMetricsFactory {
        var factory = PrometheusMetricsFactory(registry: registry)
        let latencies: [Duration] = [
            .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5),
            .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500),
            .seconds(1), .seconds(2), .seconds(5),
        ]
        factory.defaultDurationHistogramBuckets = latencies
        factory.defaultValueHistogramBuckets = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000]
        return factory
    }

    /// The current text exposition.
    public func render() -> ByteBuffer {
        if let heldKeys { heldKeys.gauge.set(Double(heldKeys.read())) }
        return ByteBuffer(bytes: registry.emitToBuffer())
    }
}

extension Router {
    /// Adds `GET /metrics` when `endpoint` is given.
    @discardableResult
    public func addMetrics(_ endpoint: MetricsEndpoint?) -> Self {
        guard let endpoint else { return self }
        get("metrics") { _, _ in
            Response(
                status: .ok,
                headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: .init(byteBuffer: endpoint.render())
            )
        }
        return self
    }
}
