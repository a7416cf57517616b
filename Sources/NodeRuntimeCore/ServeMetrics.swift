import CoreMetrics
import NIOConcurrencyHelpers
import Prometheus

/// Per-project request, byte and status-class counters, exported at `/metrics` in Prometheus text.
public final class ServeMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry
    private let factory: PrometheusMetricsFactory
    private let counters = NIOLockedValueBox([String: Counters]())

    /// Small-file cache lookups, over all event loops.
    public let cache: CacheCounters

    public init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
        self.registry = registry
        self.factory = PrometheusMetricsFactory(registry: registry)
        self.cache = CacheCounters(
            hits: CoreMetrics.Counter(label: "micromirror_http_cache_hits_total", factory: factory),
            misses: CoreMetrics.Counter(label: "micromirror_http_cache_misses_total", factory: factory)
        )
    }

    /// Hits and misses of the in-memory small-file cache.
    public struct CacheCounters: Sendable {
        let hits: CoreMetrics.Counter
        let misses: CoreMetrics.Counter

        func hit() { hits.increment() }
        func miss() { misses.increment() }
    }

    /// The two counters of one project and status class.
    public struct Counters: Sendable {
        public let project: String
        public let statusClass: Int
        let requests: CoreMetrics.Counter
        let bytes: CoreMetrics.Counter

        /// Counts one finished request that sent `bytes` body bytes.
        public func record(bytes sent: Int64) {
            requests.increment()
            bytes.increment(by: Int(sent))
        }
    }

    /// The counters for `project` and the class of `status` (2xx, 4xx, ...), made on first use.
    /// Connections keep the last ones they used, so the shared table is rarely consulted.
    public func counters(project: String, status: Int) -> Counters {
        let name = project.isEmpty ? "-" : project
        let statusClass = status / 100
        let key = name + "\u{0}" + String(statusClass)
        return counters.withLockedValue { map in
            if let existing = map[key] { return existing }
            let dimensions = [("project", name), ("status", "\(statusClass)xx")]
            let made = Counters(
                project: project, statusClass: statusClass,
                requests: CoreMetrics.Counter(label: "micromirror_http_requests_total", dimensions: dimensions, factory: factory),
                bytes: CoreMetrics.Counter(label: "micromirror_http_sent_bytes_total", dimensions: dimensions, factory: factory)
            )
            map[key] = made
            return made
        }
    }

    /// Counts one finished request.
    public func record(project: String, status: Int, bytes: Int64) {
        counters(project: project, status: status).record(bytes: bytes)
    }

    public func prometheusText() -> String { registry.emitToString() }
}
