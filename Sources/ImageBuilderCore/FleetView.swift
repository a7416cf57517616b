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
    }

    public var nodes: [Node]

    /// Builds the view from the retained messages (topic → payload) under `prefix`.
    public init(messages: [String: [UInt8]], prefix: String = NodeReport.topicPrefix, now: Date = Date(), downAfter: TimeInterval = 900) {
        var reports: [String: NodeReport] = [:]
        var statuses: [String: String] = [:]
        for (topic, payload) in messages {
            guard topic.hasPrefix(prefix + "/") else { continue }
            let parts = topic.dropFirst(prefix.count + 1).split(separator: "/")
            guard parts.count == 2 else { continue }
            let name = String(parts[0])
            switch parts[1] {
            case "state": if let report = try? NodeReport.parse(payload), report.node == name { reports[name] = report }
            case "status": statuses[name] = String(decoding: payload, as: UTF8.self)
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
                projects: report.projects
            )
        }
    }

    /// Reads the retained messages from `broker` (`mqtt://HOST[:PORT]` or `mqtts://…`): subscribes,
    /// then waits until `quiet` passes with nothing new (retained messages come at once), within `timeout`.
    public static func retained(
        broker: String, prefix: String = NodeReport.topicPrefix, credentials: (String, String)? = nil,
        quiet: Duration = .milliseconds(700), timeout: Duration = .seconds(10)
    ) async throws -> [String: [UInt8]] {
        let address = try MQTTBroker(url: broker, role: "the watchtower's broker")
        let state = Mutex((messages: [String: [UInt8]](), last: ContinuousClock.now))
        let client = try MQTTClient(clientID: "mm-image-fleet-\(getpid())-\(UUID().uuidString.prefix(8))", subscriptions: [prefix + "/+/state", prefix + "/+/status"], cleanSession: true) { message in
            state.withLock {
                $0.messages[message.topic] = message.payload
                $0.last = .now
            }
        }
        if address.tls { try client.useTLS() }
        if let (user, password) = credentials { try client.useCredentials(username: user, password: password) }
        try client.start(host: address.host, port: address.port)
        defer { client.stop() }
        let deadline = ContinuousClock.now + timeout
        while !client.isConnected {
            guard ContinuousClock.now < deadline else { throw BuildError(stage: "fleet", "the broker \(address.description) did not accept the connection within \(timeout)") }
            try await Task.sleep(for: .milliseconds(50))
        }
        state.withLock { $0.last = .now }
        while ContinuousClock.now < deadline, ContinuousClock.now - state.withLock({ $0.last }) < quiet {
            try await Task.sleep(for: .milliseconds(50))
        }
        return state.withLock { $0.messages }
    }
}
