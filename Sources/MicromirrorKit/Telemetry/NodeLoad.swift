import Foundation

/// The compact metrics message a node sends the watchtower every minute, retained on
/// `micromirror/nodes/HOSTNAME/load`: how busy it is now. A few dozen bytes; the time series are
/// Prometheus' (it scrapes `/metrics`), this is what `mm-image fleet` shows at a glance.
public struct NodeLoad: TelemetryMessage, Sendable, Equatable {
    public var time: Date
    /// The kernel's load averages over 1, 5 and 15 minutes.
    public var load: [Double]
    /// Established TCP connections to the serving ports (HTTP 80 and 443, rsync 873).
    public var connections: Int
    /// The uplinks' rates since the previous message.
    public var sentBitsPerSecond: Int64
    public var receivedBitsPerSecond: Int64

    public init(time: Date, load: [Double], connections: Int, sentBitsPerSecond: Int64, receivedBitsPerSecond: Int64) {
        self.time = time
        self.load = load
        self.connections = connections
        self.sentBitsPerSecond = sentBitsPerSecond
        self.receivedBitsPerSecond = receivedBitsPerSecond
    }

    public static func topic(node: String, prefix: String = NodeReport.topicPrefix) -> String { "\(prefix)/\(node)/load" }

    /// For people: `0.42 load, 12 conn, 85.3 Mbit/s out`.
    public var summary: String {
        String(format: "%.2f load, %d conn, %.1f Mbit/s out", load.first ?? 0, connections, Double(sentBitsPerSecond) / 1_000_000)
    }
}
