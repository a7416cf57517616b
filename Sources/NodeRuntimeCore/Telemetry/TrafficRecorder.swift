import Foundation
import Logging
import NIOConcurrencyHelpers
import ServiceLifecycle

/// Samples the server's bytes per project and the interfaces' counters every `interval` and adds
/// what moved since the last sample to the traffic history. The first sample after a start is a
/// baseline (the kernel counts since boot), so a restart loses at most one interval and never
/// counts a total twice; a series that appears later counts from zero (the server's counters
/// start at zero with it), and a counter that went backwards (a NIC reset) from its new value.
public final class TrafficRecorder: Service, Sendable {
    public let history: TrafficHistory
    public let interval: Duration
    private let sample: @Sendable () -> [String: Int64]
    private let logger: Logger

    /// `sample` returns the running totals per series (see `TrafficHistory.projectSeries` and `interfaceSeries`).
    public init(history: TrafficHistory, interval: Duration = .seconds(60), logger: Logger, sample: @escaping @Sendable () -> [String: Int64]) {
        self.history = history
        self.interval = interval
        self.sample = sample
        self.logger = logger
    }

    /// The series totals a serving node samples: the server's bytes per project, the NICs' both ways.
    public static func totals(metrics: ServeMetrics, network: [NetworkCounters]) -> [String: Int64] {
        var totals: [String: Int64] = [:]
        for (project, bytes) in metrics.sentBytesByProject() { totals[TrafficHistory.projectSeries(project)] = bytes }
        for nic in network {
            totals[TrafficHistory.interfaceSeries(nic.interface, sent: true)] = nic.sentBytes
            totals[TrafficHistory.interfaceSeries(nic.interface, sent: false)] = nic.receivedBytes
        }
        return totals
    }

    /// What moved between two samples: growth, or the new value where a counter went backwards
    /// or a series is new since the last sample (a project's first request, an interface plugged in).
    public static func deltas(from old: [String: Int64], to new: [String: Int64]) -> [String: Int64] {
        var moved: [String: Int64] = [:]
        for (series, value) in new {
            let before = old[series] ?? 0
            let delta = value >= before ? value - before : value
            if delta > 0 { moved[series] = delta }
        }
        return moved
    }

    public func run() async throws {
        let last = NIOLockedValueBox(sample())
        try? await cancelWhenGracefulShutdown { [self] in
            while true {
                try await Task.sleep(for: interval)
                record(since: last)
            }
        }
        // What moved since the last sample is kept on the way out too.
        record(since: last)
    }

    /// Adds what moved since the sample in `last` and keeps the new one there.
    private func record(since last: NIOLockedValueBox<[String: Int64]>) {
        let now = sample()
        let moved = last.withLockedValue { previous in
            defer { previous = now }
            return Self.deltas(from: previous, to: now)
        }
        do {
            try history.add(moved, at: Date())
        } catch {
            logger.warning("traffic history not written", metadata: ["error": "\(error)", "path": "\(history.path)"])
        }
    }
}
