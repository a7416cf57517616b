import Foundation
import MicromirrorKit

import SystemKit
import Synchronization

/// The NOC's view of the fleet, from what the nodes left on the watchtower's broker: each node's
/// retained report (`micromirror/nodes/NODE/state`) and its retained `online`/`offline`
/// (`…/status`, `offline` being its last will). A node is down when it said `offline` (a clean
/// stop, or the broker saw its connection drop) or has not reported within `downAfter`.
public struct FleetView: Sendable {
    /// One node as the NOC sees it.
    public struct Node: Codable, Sendable, Equatable {
        public var node: String
        public var sponsor: String
        public var up: Bool
        /// Why it is down, when it is.
        public var why: String?
        public var lastHeard: Date
        public var version: String?
        public var build: Int64?
        public var slot: String?
        public var blessed: Bool?
        public var rolledBack: [Int64]
        public var addresses: [String]
        public var sentBytes: Int64
        public var dataFreeBytes: Int64?
        /// Projects with no successful sync within the node's stale threshold.
        public var staleProjects: [String]
        public var projects: [NodeReport.Project]
        /// Its latest load message (`…/load`), and the limits it runs with.
        public var load: NodeLoad?
        public var limits: NodeReport.Limits?

        public init(
            node: String, sponsor: String, up: Bool, why: String?, lastHeard: Date, version: String?, build: Int64?, slot: String?, blessed: Bool?,
            rolledBack: [Int64], addresses: [String], sentBytes: Int64, dataFreeBytes: Int64?, staleProjects: [String], projects: [NodeReport.Project],
            load: NodeLoad? = nil, limits: NodeReport.Limits? = nil
        ) {
            self.load = load
            self.limits = limits
            self.node = node
            self.sponsor = sponsor
            self.up = up
            self.why = why
            self.lastHeard = lastHeard
            self.version = version
            self.build = build
            self.slot = slot
            self.blessed = blessed
            self.rolledBack = rolledBack
            self.addresses = addresses
            self.sentBytes = sentBytes
            self.dataFreeBytes = dataFreeBytes
            self.staleProjects = staleProjects
            self.projects = projects
        }
    }

    public var nodes: [Node]

    public init(nodes: [Node]) { self.nodes = nodes }

    /// Builds the view from the retained messages (topic → payload) under `prefix`.
    public init(messages: [String: [UInt8]], prefix: String = NodeReport.topicPrefix, now: Date = Date(), downAfter: TimeInterval = 900) {
        var reports: [String: NodeReport] = [:]
        var statuses: [String: String] = [:]
        var loads: [String: NodeLoad] = [:]
        for (topic, payload) in messages {
            guard topic.hasPrefix(prefix + "/") else { continue }
            let parts = topic.dropFirst(prefix.count + 1).split(separator: "/")
            guard parts.count == 2 else { continue }
            let name = String(parts[0])
            switch parts[1] {
            case "state": if let report = try? NodeReport.parse(payload), report.node == name { reports[name] = report }
            case "status": statuses[name] = String(decoding: payload, as: UTF8.self)
            case "load": loads[name] = try? NodeLoad.parse(payload)
            default: continue
            }
        }
        nodes = reports.values.sorted { $0.node < $1.node }.map { report in
            let age = now.timeIntervalSince(report.time)
            var why: String?
            if statuses[report.node] == "offline" {
                why = "offline: it stopped, or the broker lost its connection (its last will)"
            } else if age > downAfter {
                why = "not heard from for \(Int((age / 60).rounded())) min (down after \(Int((downAfter / 60).rounded())) min)"
            }
            return Node(
                node: report.node, sponsor: report.sponsor, up: why == nil, why: why, lastHeard: report.time, version: report.version,
                build: report.build, slot: report.slot, blessed: report.blessed, rolledBack: report.rolledBack, addresses: report.addresses,
                sentBytes: report.sentBytes, dataFreeBytes: report.dataFreeBytes, staleProjects: report.projects.filter(\.stale).map(\.name),
                projects: report.projects, load: loads[report.node], limits: report.limits
            )
        }
    }

    /// Reads the retained messages from `broker` (`mqtt://HOST[:PORT]` or `mqtts://…`): subscribes,
    /// then waits until `quiet` passes with nothing new (retained messages come at once), within `timeout`.
    public static func retained(
        broker: String, prefix: String = NodeReport.topicPrefix, credentials: (String, String)? = nil,
        quiet: Duration = .milliseconds(700), timeout: Duration = .seconds(10)
    ) async throws -> [String: [UInt8]] {
        let feed = try FleetFeed(broker: broker, prefix: prefix, credentials: credentials)
        defer { feed.close() }
        try await feed.open(quiet: quiet, timeout: timeout)
        return feed.messages
    }
}

/// A subscription to every node's state and status on the watchtower's broker, kept open: the
/// latest message of each topic, as the broker hands them over (the retained ones at once).
public final class FleetFeed: Sendable {
    public let broker: MQTTBroker
    private let client: MQTTClient
    private let received = Received()

    /// The latest message per topic and when the last one came; shared with libmosquitto's thread.
    private final class Received: Sendable {
        let state = Mutex((messages: [String: [UInt8]](), last: ContinuousClock.now))
    }

    public init(broker: String, prefix: String = NodeReport.topicPrefix, credentials: (String, String)? = nil) throws {
        self.broker = try MQTTBroker(url: broker, role: "the watchtower's broker")
        let received = self.received
        client = try MQTTClient(
            clientID: "mm-image-fleet-\(getpid())-\(UUID().uuidString.prefix(8))", subscriptions: [prefix + "/+/state", prefix + "/+/status", prefix + "/+/load"], cleanSession: true
        ) { message in
            received.state.withLock {
                $0.messages[message.topic] = message.payload
                $0.last = .now
            }
        }
        if self.broker.tls { try client.useTLS() }
        if let (user, password) = credentials { try client.useCredentials(username: user, password: password) }
    }

    /// Connects, then waits until `quiet` passes with nothing new, within `timeout`.
    public func open(quiet: Duration = .milliseconds(700), timeout: Duration = .seconds(10)) async throws {
        try client.start(host: broker.host, port: broker.port)
        let deadline = ContinuousClock.now + timeout
        while !client.isConnected {
            guard ContinuousClock.now < deadline else { throw BuildError(stage: "fleet", "the broker \(broker.description) did not accept the connection within \(timeout)") }
            try await Task.sleep(for: .milliseconds(50))
        }
        received.state.withLock { $0.last = .now }
        while ContinuousClock.now < deadline, ContinuousClock.now - received.state.withLock({ $0.last }) < quiet {
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    /// The latest message of each topic so far.
    public var messages: [String: [UInt8]] { received.state.withLock { $0.messages } }

    public func close() { client.stop() }
}

/// Something about a node the NOC wants to hear once: it went down or came up, a project went
/// stale or fresh again, a build rolled back on it.
public struct FleetEvent: Sendable, Equatable {
    public enum Kind: String, Sendable {
        case down, up, stale, fresh
        case rolledBack = "rolled-back"
    }

    public var node: String
    public var kind: Kind
    /// The project (stale, fresh) or the build (rolled back) it is about.
    public var subject: String?
    public var detail: String

    public init(node: String, kind: Kind, subject: String? = nil, detail: String) {
        self.node = node
        self.kind = kind
        self.subject = subject
        self.detail = detail
    }
}

extension FleetView {
    /// What changed from `old` to this view, each change once. A node seen for the first time
    /// counts as coming up (or going down, if it is down); a node no longer listed says nothing.
    public func events(since old: FleetView) -> [FleetEvent] {
        let before = Dictionary(uniqueKeysWithValues: old.nodes.map { ($0.node, $0) })
        var events: [FleetEvent] = []
        for node in nodes {
            let was = before[node.node]
            if was?.up != node.up {
                events.append(FleetEvent(node: node.node, kind: node.up ? .up : .down, detail: node.why ?? "reporting (\(node.version ?? "version unknown"), slot \(node.slot ?? "-"))"))
            }
            let stale = Set(node.staleProjects), wasStale = Set(was?.staleProjects ?? [])
            for project in stale.subtracting(wasStale).sorted() {
                events.append(FleetEvent(node: node.node, kind: .stale, subject: project, detail: "\(project) has not synced successfully within its stale threshold"))
            }
            for project in wasStale.subtracting(stale).sorted() {
                events.append(FleetEvent(node: node.node, kind: .fresh, subject: project, detail: "\(project) synced again"))
            }
            for build in Set(node.rolledBack).subtracting(was?.rolledBack ?? []).sorted() {
                events.append(FleetEvent(node: node.node, kind: .rolledBack, subject: "\(build)", detail: "build \(build) did not come up healthy and fell back"))
            }
        }
        return events
    }
}
