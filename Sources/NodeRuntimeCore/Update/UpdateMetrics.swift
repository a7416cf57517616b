import CoreMetrics
import MicromirrorKit
import NIOConcurrencyHelpers

/// The update's state as gauges at `/metrics`, set from `/srv/state/update.json` at each scrape
/// (the updater runs in its own process and unit; the file is what it shares).
///
/// - `micromirror_boot_info{slot,version,build}` 1 for the running image;
/// - `micromirror_boot_blessed` 1 once the booted slot passed its health gate (its entry stopped counting);
/// - `micromirror_update_phase{phase}` 1 for the current phase, 0 for the others;
/// - `micromirror_update_target_build`, `micromirror_update_download_bytes`, `micromirror_update_download_total_bytes`;
/// - `micromirror_update_rolled_back{build}` 1 for each build that fell back here, and
///   `micromirror_update_rollbacks` how many (alert on a rise);
/// - `micromirror_update_error` 1 while the last attempt failed.
public final class UpdateMetrics: Sendable {
    private let factory: any MetricsFactory
    private let phases: [UpdateState.Phase: Gauge]
    private let blessed: Gauge
    private let target: Gauge
    private let downloaded: Gauge
    private let total: Gauge
    private let rollbacks: Gauge
    private let error: Gauge
    /// Gauges with label values seen so far (the boot, rolled-back builds), made on first sight.
    private let labelled = NIOLockedValueBox([String: Gauge]())
    /// The boot last shown, set back to 0 when another takes its place.
    private let shownBoot = NIOLockedValueBox<Gauge?>(nil)

    public init(factory: any MetricsFactory) {
        self.factory = factory
        let all: [UpdateState.Phase] = [.idle, .downloading, .installing, .installed, .trial]
        phases = Dictionary(uniqueKeysWithValues: all.map { ($0, Gauge(label: "micromirror_update_phase", dimensions: [("phase", $0.rawValue)], factory: factory)) })
        blessed = Gauge(label: "micromirror_boot_blessed", factory: factory)
        target = Gauge(label: "micromirror_update_target_build", factory: factory)
        downloaded = Gauge(label: "micromirror_update_download_bytes", factory: factory)
        total = Gauge(label: "micromirror_update_download_total_bytes", factory: factory)
        rollbacks = Gauge(label: "micromirror_update_rollbacks", factory: factory)
        error = Gauge(label: "micromirror_update_error", factory: factory)
    }

    /// Sets every gauge from `state` (nil: the updater has not run on this node yet).
    public func record(_ state: UpdateState?) {
        let state = state ?? UpdateState()
        for (phase, gauge) in phases { gauge.record(phase == state.phase ? 1 : 0) }
        target.record(state.target?.buildNumber ?? 0)
        let downloading = state.phase == .downloading
        downloaded.record(downloading ? state.downloadedBytes : 0)
        total.record(downloading ? state.totalBytes : 0)
        rollbacks.record(state.rolledBack.count)
        error.record(state.lastError == nil ? 0 : 1)
        if let boot = state.boot {
            let info = gauge("micromirror_boot_info", [("slot", boot.slot), ("version", boot.version), ("build", "\(boot.buildNumber)")])
            shownBoot.withLockedValue { shown in
                if let shown, shown !== info { shown.record(0) }
                shown = info
            }
            info.record(1)
            let entry = boot.entries.compactMap(BootEntry.parse(fileName:)).first { $0.slot == boot.slot }
            blessed.record(entry.map { $0.counting ? 0 : 1 } ?? 0)
        }
        for build in state.rolledBack { gauge("micromirror_update_rolled_back", [("build", "\(build)")]).record(1) }
    }

    private func gauge(_ label: String, _ dimensions: [(String, String)]) -> Gauge {
        let key = ([label] + dimensions.map { $0.0 + "=" + $0.1 }).joined(separator: "\u{0}")
        return labelled.withLockedValue { map in
            if let existing = map[key] { return existing }
            let made = Gauge(label: label, dimensions: dimensions, factory: factory)
            map[key] = made
            return made
        }
    }
}
