import CoreMetrics
import Foundation
import NIOConcurrencyHelpers
import SystemKit

/// What the machine itself says, as gauges set at each scrape of `/metrics`:
///
/// - `micromirror_network_{received,sent}_bytes{interface}`, `…_packets`, `…_errors`, `…_drops`:
///   `/proc/net/dev` (loopback left out); counters since boot, so `rate()` works across scrapes;
/// - `micromirror_data_size_bytes`, `micromirror_data_free_bytes`: the filesystem of the mirror root (mm-data);
/// - `micromirror_cpu_temperature_celsius`: k10temp on the T620, absent where there is no sensor;
/// - `micromirror_sync_state{project,state}` 1 for each project's state, `micromirror_sync_stale{project}`,
///   `micromirror_sync_freshness_age_seconds{project}` since the last successful sync (absent: never),
///   `micromirror_sync_size_bytes{project}` as the upstream lists it;
/// - for projects in cache mode: `micromirror_cache_files{project}`, `micromirror_cache_bytes{project}`,
///   `micromirror_cache_budget_bytes{project}`, `micromirror_cache_answers{project,result}` (hit,
///   revalidated, miss, stale, error: counts since the server started), `micromirror_cache_hit_ratio{project}`,
///   `micromirror_cache_origin_bytes{project}`, `micromirror_cache_evicted{project}`, `micromirror_cache_origin_up{project}`.
public final class HostMetrics: Sendable {
    private let factory: any MetricsFactory
    private let gauges = NIOLockedValueBox([String: Gauge]())
    /// Gauges shown at the previous scrape, so a state a project left goes back to 0.
    private let shown = NIOLockedValueBox(Set<String>())

    public init(factory: any MetricsFactory) { self.factory = factory }

    /// The states `micromirror_sync_state` knows (each project has one gauge per state).
    static let syncStates = ["success", "failed", "refused-by-guard", "refused-by-disk-budget", "never", "syncing"]

    /// Sets every gauge: the network from `network`, the disk at `dataPath`, the sensors, and the projects.
    public func record(network: [NetworkCounters], dataPath: String, temperature: Double?, projects: [StatusPage.Project], now: Date = Date()) {
        var seen = Set<String>()
        func set(_ label: String, _ dimensions: [(String, String)] = [], _ value: Double) {
            let key = ([label] + dimensions.map { $0.0 + "=" + $0.1 }).joined(separator: "\u{0}")
            seen.insert(key)
            gauge(key, label, dimensions).record(value)
        }
        for nic in network {
            let d = [("interface", nic.interface)]
            set("micromirror_network_received_bytes", d, Double(nic.receivedBytes))
            set("micromirror_network_sent_bytes", d, Double(nic.sentBytes))
            set("micromirror_network_received_packets", d, Double(nic.receivedPackets))
            set("micromirror_network_sent_packets", d, Double(nic.sentPackets))
            set("micromirror_network_errors", d + [("direction", "receive")], Double(nic.receiveErrors))
            set("micromirror_network_errors", d + [("direction", "send")], Double(nic.sendErrors))
            set("micromirror_network_drops", d + [("direction", "receive")], Double(nic.receiveDrops))
            set("micromirror_network_drops", d + [("direction", "send")], Double(nic.sendDrops))
        }
        if let size = try? DiskSpace.total(at: dataPath), let free = try? DiskSpace.available(at: dataPath) {
            set("micromirror_data_size_bytes", [], Double(size))
            set("micromirror_data_free_bytes", [], Double(free))
        }
        if let temperature { set("micromirror_cpu_temperature_celsius", [], temperature) }
        for project in projects {
            let p = [("project", project.name)]
            let state = project.syncingSince != nil ? "syncing" : project.state
            for known in Self.syncStates { set("micromirror_sync_state", p + [("state", known)], known == state ? 1 : 0) }
            set("micromirror_sync_stale", p, project.stale ? 1 : 0)
            if let success = project.lastSuccess { set("micromirror_sync_freshness_age_seconds", p, max(0, now.timeIntervalSince(success))) }
            if let size = project.size { set("micromirror_sync_size_bytes", p, Double(size)) }
            if let cache = project.cache {
                set("micromirror_cache_files", p, Double(cache.files))
                set("micromirror_cache_bytes", p, Double(cache.bytes))
                set("micromirror_cache_budget_bytes", p, Double(cache.budget))
                let c = cache.counts
                for (result, count) in [("hit", c.hits), ("revalidated", c.revalidated), ("miss", c.misses), ("stale", c.stale), ("error", c.errors)] {
                    set("micromirror_cache_answers", p + [("result", result)], Double(count))
                }
                if let ratio = cache.hitRatio { set("micromirror_cache_hit_ratio", p, ratio) }
                set("micromirror_cache_origin_bytes", p, Double(c.originBytes))
                set("micromirror_cache_evicted", p, Double(c.evicted))
                set("micromirror_cache_origin_up", p, cache.originError == nil ? 1 : 0)
            }
        }
        // A gauge shown before and not now (an interface gone, a project dropped) is taken away.
        let gone = shown.withLockedValue { old in
            defer { old = seen }
            return old.subtracting(seen)
        }
        gauges.withLockedValue { map in
            for key in gone {
                map.removeValue(forKey: key)?.destroy()
            }
        }
    }

    private func gauge(_ key: String, _ label: String, _ dimensions: [(String, String)]) -> Gauge {
        gauges.withLockedValue { map in
            if let existing = map[key] { return existing }
            let made = Gauge(label: label, dimensions: dimensions, factory: factory)
            map[key] = made
            return made
        }
    }
}
