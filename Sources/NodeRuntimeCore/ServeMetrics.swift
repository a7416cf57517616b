import CoreMetrics
import NIOConcurrencyHelpers
import Prometheus

/// Per-project request, byte and status-class counters, exported at `/metrics` in Prometheus text.
public final class ServeMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry
    private let factory: PrometheusMetricsFactory
    private let counters = NIOLockedValueBox([String: (requests: CoreMetrics.Counter, bytes: CoreMetrics.Counter)]())

    public init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
        self.registry = registry
        self.factory = PrometheusMetricsFactory(registry: registry)
    }

    /// Counts one finished request.
    public func record(project: String, status: Int, bytes: Int64) {
        let name = project.isEmpty ? "-" : project
        let statusClass = "\(status / 100)xx"
        let key = name + "\u{0}" + statusClass
        let pair = counters.withLockedValue { map in
            if let existing = map[key] { return existing }
            let dimensions = [("project", name), ("status", statusClass)]
            let made = (
                requests: CoreMetrics.Counter(label: "micromirror_http_requests_total", dimensions: dimensions, factory: factory),
                bytes: CoreMetrics.Counter(label: "micromirror_http_sent_bytes_total", dimensions: dimensions, factory: factory)
            )
            map[key] = made
            return made
        }
        pair.requests.increment()
        pair.bytes.increment(by: Int(bytes))
    }

    public func prometheusText() -> String { registry.emitToString() }
}
