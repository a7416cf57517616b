import CoreMetrics
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Prometheus

/// Per-project request, byte and status-class counters and the small-file cache's hits and misses,
/// exported at `/metrics` in Prometheus text.
///
/// Requests are tallied per event loop and added to the shared counters once a second and before
/// every scrape: shared atomic counters touched by every request from every core cost more than
/// parsing the request. A scrape always sees every request that finished before it.
public final class ServeMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry
    private let factory: PrometheusMetricsFactory
    private let counters = NIOLockedValueBox([String: Counters]())
    private let sentTotals = NIOLockedValueBox([String: Int64]())
    private let cacheHits: CoreMetrics.Counter
    private let cacheMisses: CoreMetrics.Counter
    /// The update's state, set from its file at each scrape.
    public let update: UpdateMetrics
    /// The machine (network, mm-data, temperature) and each project's sync state, set at each scrape.
    public let host: HostMetrics
    private let tallies = ThreadSpecificVariable<Tally>()
    private let allTallies = NIOLockedValueBox<[Tally]>([])
    /// How long a tally may hold counts before they are published.
    static let publishInterval = TimeAmount.seconds(1)

    public init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
        self.registry = registry
        self.factory = PrometheusMetricsFactory(registry: registry)
        self.cacheHits = CoreMetrics.Counter(label: "micromirror_http_cache_hits_total", factory: factory)
        self.cacheMisses = CoreMetrics.Counter(label: "micromirror_http_cache_misses_total", factory: factory)
        self.update = UpdateMetrics(factory: factory)
        self.host = HostMetrics(factory: factory)
    }

    /// The two counters of one project and status class.
    public struct Counters: Sendable {
        let requests: CoreMetrics.Counter
        let bytes: CoreMetrics.Counter

        func add(requests count: Int, bytes sent: Int64) {
            requests.increment(by: count)
            bytes.increment(by: Int(sent))
        }
    }

    /// The counters for `project` and the class of `status` (2xx, 4xx, ...), made on first use.
    func counters(project: String, statusClass: Int) -> Counters {
        let name = project.isEmpty ? "other" : project
        let key = name + "\u{0}" + String(statusClass)
        return counters.withLockedValue { map in
            if let existing = map[key] { return existing }
            let dimensions = [("project", name), ("status", "\(statusClass)xx")]
            let made = Counters(
                requests: CoreMetrics.Counter(label: "micromirror_http_requests_total", dimensions: dimensions, factory: factory),
                bytes: CoreMetrics.Counter(label: "micromirror_http_sent_bytes_total", dimensions: dimensions, factory: factory)
            )
            map[key] = made
            return made
        }
    }

    /// Counts one finished request at once (off the event loops).
    public func record(project: String, status: Int, bytes: Int64) {
        add(project: project, statusClass: status / 100, requests: 1, bytes: bytes)
    }

    /// Adds to the Prometheus counters and to the byte totals the traffic history samples.
    func add(project: String, statusClass: Int, requests: Int, bytes: Int64) {
        counters(project: project, statusClass: statusClass).add(requests: requests, bytes: bytes)
        guard bytes > 0 else { return }
        sentTotals.withLockedValue { $0[project.isEmpty ? "other" : project, default: 0] += bytes }
    }

    /// Bytes sent per project label since the server started (every request finished so far).
    public func sentBytesByProject() -> [String: Int64] {
        for tally in allTallies.withLockedValue({ $0 }) { tally.publish() }
        return sentTotals.withLockedValue { $0 }
    }

    /// The calling event loop's tally (made on first use). Only that loop may record into it.
    func tally(on eventLoop: any EventLoop) -> Tally {
        tallies.value {
            let made = Tally(metrics: self, eventLoop: eventLoop)
            allTallies.withLockedValue { $0.append(made) }
            return made
        }
    }

    public func prometheusText() -> String {
        for tally in allTallies.withLockedValue({ $0 }) { tally.publish() }
        return registry.emitToString()
    }

    /// One event loop's counts since they were last published. Its lock is only ever contended by a
    /// scrape.
    final class Tally: @unchecked Sendable {
        private struct Key: Hashable {
            var project: String
            var statusClass: Int
        }

        private let lock = NIOLock()
        private var requests: [Key: (count: Int, bytes: Int64)] = [:]
        private var hits = 0
        private var misses = 0
        private var publishScheduled = false
        /// Weak: a publish scheduled before the server went away finds nothing to publish to.
        private weak var metrics: ServeMetrics?
        private let eventLoop: any EventLoop

        fileprivate init(metrics: ServeMetrics, eventLoop: any EventLoop) {
            self.metrics = metrics
            self.eventLoop = eventLoop
        }

        func request(project: String, status: Int, bytes: Int64) {
            lock.withLock {
                let key = Key(project: project, statusClass: status / 100)
                let old = requests[key] ?? (0, 0)
                requests[key] = (old.count + 1, old.bytes + bytes)
                schedulePublish()
            }
        }

        func cacheHit() { lock.withLock { hits += 1; schedulePublish() } }

        func cacheMiss() { lock.withLock { misses += 1; schedulePublish() } }

        /// Adds the counts to the shared counters and starts again from zero.
        func publish() {
            guard let metrics else { return }
            lock.withLock {
                for (key, value) in requests where value.count > 0 {
                    metrics.add(project: key.project, statusClass: key.statusClass, requests: value.count, bytes: value.bytes)
                }
                // Keep the keys: the same few come back, and their slots need not be made again.
                for key in requests.keys { requests[key] = (0, 0) }
                if hits > 0 { metrics.cacheHits.increment(by: hits) }
                if misses > 0 { metrics.cacheMisses.increment(by: misses) }
                (hits, misses) = (0, 0)
            }
        }

        /// Caller holds the lock.
        private func schedulePublish() {
            guard !publishScheduled else { return }
            publishScheduled = true
            eventLoop.scheduleTask(in: ServeMetrics.publishInterval) { [self] in
                lock.withLock { publishScheduled = false }
                publish()
            }
        }
    }
}
