import Foundation
import Logging
import MicromirrorKit
import ServiceLifecycle
import SystemKit

/// Pushes the node's report to the NOC's watchtower over MQTT (the node file's `telemetry:
/// target:`, `mqtt://` or `mqtts://`): the retained `NodeReport` on `micromirror/nodes/NODE/state`
/// at once, whenever it changes (looked at every `checkEvery`) and every `interval` regardless;
/// `online` retained on `…/status`, with `offline` as the last will, so a node that dies is marked
/// down by the broker itself, and `offline` published on a clean stop. QoS 1, persistent session.
public final class TelemetryPublisher: Service, Sendable {
    public let broker: MQTTBroker
    public let node: String
    public let interval: Duration
    public let checkEvery: Duration
    private let credentials: (username: String, password: String)?
    private let report: @Sendable () -> NodeReport
    private let logger: Logger

    /// `target` is `mqtt://HOST[:PORT]` (1883) or `mqtts://HOST[:PORT]` (8883); `report` gathers the node's report.
    public init(
        target: String, node: String, interval: Duration = .seconds(300), checkEvery: Duration = .seconds(30),
        credentials: (username: String, password: String)? = nil, logger: Logger, report: @escaping @Sendable () -> NodeReport
    ) throws {
        self.broker = try MQTTBroker(url: target, role: "the telemetry target")
        self.node = node
        self.interval = interval
        self.checkEvery = checkEvery
        self.credentials = credentials
        self.report = report
        self.logger = logger
    }

    public func run() async throws {
        let (logger, node) = (self.logger, self.node)
        let client = try MQTTClient(clientID: "mm-" + node + "-telemetry", subscriptions: []) { _ in }
        if broker.tls { try client.useTLS() }
        if let credentials { try client.useCredentials(username: credentials.username, password: credentials.password) }
        try client.setWill(topic: NodeReport.statusTopic(node: node), payload: Array("offline".utf8))
        let (broker, interval, checkEvery, report) = (self.broker, self.interval, self.checkEvery, self.report)
        try? await cancelWhenGracefulShutdown {
            try await client.connect(to: broker) { error, delay in
                logger.warning("telemetry broker unreachable; retrying", metadata: ["error": "\(error)", "retry-in": "\(delay)"])
            }
            logger.info("reporting to the watchtower", metadata: ["broker": "\(broker.description)", "topic": "\(NodeReport.stateTopic(node: node))"])
            var last: NodeReport?
            var lastSent = ContinuousClock.now
            var wasConnected = false
            while true {
                let now = report()
                let connected = client.isConnected
                // On every (re)connect, at a change, and at the interval: the broker keeps the last one.
                if last == nil || (connected && !wasConnected) || !(last!.sameState(as: now)) || ContinuousClock.now - lastSent >= interval {
                    do {
                        try client.publish(topic: NodeReport.statusTopic(node: node), payload: Array("online".utf8), retain: true)
                        try client.publish(topic: NodeReport.stateTopic(node: node), payload: try now.json(), retain: true)
                        last = now
                        lastSent = ContinuousClock.now
                    } catch {
                        logger.warning("telemetry not published", metadata: ["error": "\(error)"])
                    }
                }
                wasConnected = connected
                try await Task.sleep(for: checkEvery)
            }
        }
        // A clean stop sends no will: say it, and give libmosquitto a moment to deliver it.
        try? client.publish(topic: NodeReport.statusTopic(node: node), payload: Array("offline".utf8), retain: true)
        try? await Task.sleep(for: .milliseconds(300))
        client.stop()
    }
}
