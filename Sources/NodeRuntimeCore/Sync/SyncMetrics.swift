import CoreMetrics
import Foundation
import Prometheus

/// Sync runs in Prometheus text, next to the serving counters when both share a registry:
/// `micromirror_sync_runs_total{project,result}` (result: success, skipped, failed, busy, and
/// `deletion-guard` or `disk-budget` for a run refused before it changed anything),
/// `micromirror_sync_received_bytes_total{project}` and
/// `micromirror_sync_last_success_timestamp_seconds{project}`.
public final class SyncMetrics: Sendable {
    private let factory: PrometheusMetricsFactory

    public init(registry: PrometheusCollectorRegistry) {
        self.factory = PrometheusMetricsFactory(registry: registry)
    }

    /// Shows the sync counters at the server's `/metrics`.
    public convenience init(sharing serving: ServeMetrics) { self.init(registry: serving.registry) }

    /// Counts a finished run.
    public func record(_ report: ProjectSync.Report) {
        let result = report.skipped != nil ? "skipped" : report.succeeded ? "success" : report.refused?.rawValue ?? "failed"
        CoreMetrics.Counter(label: "micromirror_sync_runs_total", dimensions: [("project", report.project), ("result", result)], factory: factory)
            .increment()
        let received = report.stages.reduce(Int64(0)) { $0 + $1.bytesReceived }
        CoreMetrics.Counter(label: "micromirror_sync_received_bytes_total", dimensions: [("project", report.project)], factory: factory)
            .increment(by: Int(received))
        if report.succeeded {
            Gauge(label: "micromirror_sync_last_success_timestamp_seconds", dimensions: [("project", report.project)], factory: factory)
                .record(report.finished.timeIntervalSince1970)
        }
    }
}
