import Foundation

/// What a node tells the NOC's watchtower about itself, as the retained state message on
/// `micromirror/nodes/HOSTNAME/state`: who it is, what it runs, where it is reached, how each
/// project stands, and what it has sent. Small (a few hundred bytes a project): the T620 keeps no
/// history for the NOC; the watchtower does.
public struct NodeReport: TelemetryMessage, Sendable, Equatable {
    public struct Project: Codable, Sendable, Equatable {
        public var name: String
        /// As `/status` says it: `success`, `failed`, `refused-by-guard`, `refused-by-disk-budget`, `never`, `syncing`.
        public var state: String
        public var lastSuccess: Date?
        public var stale: Bool
        public var size: Int64?

        public init(name: String, state: String, lastSuccess: Date?, stale: Bool, size: Int64?) {
            self.name = name
            self.state = state
            self.lastSuccess = lastSuccess
            self.stale = stale
            self.size = size
        }
    }

    /// What the node holds itself to: the server's connection caps, the rsync daemon's, how many
    /// syncs run at once and each project's rsync bandwidth limit.
    public struct Limits: Codable, Sendable, Equatable {
        public var httpConnections: Int
        public var httpConnectionsPerAddress: Int
        public var rsyncConnections: Int
        public var concurrentSyncs: Int
        /// Project → rsync `--bwlimit` (e.g. `25M`); projects without a limit are not listed.
        public var syncBandwidth: [String: String]

        public init(httpConnections: Int, httpConnectionsPerAddress: Int, rsyncConnections: Int, concurrentSyncs: Int, syncBandwidth: [String: String]) {
            self.httpConnections = httpConnections
            self.httpConnectionsPerAddress = httpConnectionsPerAddress
            self.rsyncConnections = rsyncConnections
            self.concurrentSyncs = concurrentSyncs
            self.syncBandwidth = syncBandwidth
        }
    }

    public var node: String
    public var sponsor: String
    public var version: String?
    public var build: Int64?
    public var slot: String?
    public var blessed: Bool?
    /// Builds that fell back on this node (never taken again).
    public var rolledBack: [Int64]
    public var addresses: [String]
    public var projects: [Project]
    /// Bytes sent and received by the uplink(s) since boot, from `/proc/net/dev`.
    public var sentBytes: Int64
    public var receivedBytes: Int64
    public var dataFreeBytes: Int64?
    /// When the node made this report; the watchtower calls a node down when it is too old.
    public var time: Date
    public var limits: Limits?

    public init(
        node: String, sponsor: String, version: String?, build: Int64?, slot: String?, blessed: Bool?, rolledBack: [Int64], addresses: [String],
        projects: [Project], sentBytes: Int64, receivedBytes: Int64, dataFreeBytes: Int64?, time: Date, limits: Limits? = nil
    ) {
        self.limits = limits
        self.node = node
        self.sponsor = sponsor
        self.version = version
        self.build = build
        self.slot = slot
        self.blessed = blessed
        self.rolledBack = rolledBack
        self.addresses = addresses
        self.projects = projects
        self.sentBytes = sentBytes
        self.receivedBytes = receivedBytes
        self.dataFreeBytes = dataFreeBytes
        self.time = time
    }

    /// The topics of one node under `prefix` (`micromirror/nodes`).
    public static func stateTopic(node: String, prefix: String = topicPrefix) -> String { "\(prefix)/\(node)/state" }
    public static func statusTopic(node: String, prefix: String = topicPrefix) -> String { "\(prefix)/\(node)/status" }
    public static let topicPrefix = "micromirror/nodes"
    /// Where a node asks the NOC to renew its watchtower certificate (a PEM request), and where the
    /// NOC answers with the new certificate (retained; only that node may read it).
    public static func credentialRequestTopic(node: String, prefix: String = topicPrefix) -> String { "\(prefix)/\(node)/csr" }
    public static func certificateTopic(node: String, prefix: String = topicPrefix) -> String { "\(prefix)/\(node)/certificate" }

    /// The same report but for the time and the counters that move with every packet: a change
    /// worth publishing at once.
    public func sameState(as other: NodeReport) -> Bool {
        var a = self
        let b = other
        (a.time, a.sentBytes, a.receivedBytes, a.dataFreeBytes) = (b.time, b.sentBytes, b.receivedBytes, b.dataFreeBytes)
        return a == b
    }
}
