import Foundation
import Logging
import MicromirrorKit
import ServiceLifecycle
import Synchronization
import SystemKit

/// Pushes the node's report to the NOC's watchtower over MQTT (the node file's `telemetry:
/// target:`, `mqtt://` or `mqtts://`): the retained `NodeReport` on `micromirror/nodes/NODE/state`
/// at once, whenever it changes (looked at every `checkEvery`) and every `interval` regardless;
/// `online` retained on `…/status`, with `offline` as the last will, so a node that dies is marked
/// down by the broker itself, and `offline` published on a clean stop; the compact `NodeLoad`,
/// retained on `…/load`, every `loadInterval`. QoS 1, persistent session.
///
/// With a `credential` (a certificate from the NOC's fleet CA) it logs in with it over TLS, and
/// renews it itself: two thirds into its life it sends a request signed by its identity key on
/// `…/csr` (again every `renewRetry` until answered), takes the NOC's answer from `…/certificate`,
/// checks it, puts it on mm-config and reconnects with it.
public final class TelemetryPublisher: Service, Sendable {
    public let broker: MQTTBroker
    public let node: String
    public let interval: Duration
    public let checkEvery: Duration
    public let renewRetry: Duration
    public let loadInterval: Duration
    private let load: (@Sendable () -> NodeLoad)?
    public let credential: NodeCredential?
    private let report: @Sendable () -> NodeReport
    private let logger: Logger

    /// `target` is `mqtt://HOST[:PORT]` (1883) or `mqtts://HOST[:PORT]` (8883); `report` gathers the node's report.
    public init(
        target: String, node: String, interval: Duration = .seconds(300), checkEvery: Duration = .seconds(30), credential: NodeCredential? = nil,
        renewRetry: Duration = .seconds(3600), loadInterval: Duration = .seconds(60), load: (@Sendable () -> NodeLoad)? = nil,
        logger: Logger, report: @escaping @Sendable () -> NodeReport
    ) throws {
        self.loadInterval = loadInterval
        self.load = load
        self.broker = try MQTTBroker(url: target, role: "the telemetry target")
        if credential != nil, !broker.tls {
            throw NodeCredential.CredentialError("the node has a watchtower certificate, but its telemetry target \(target) is not mqtts://; a certificate is only shown over TLS")
        }
        self.node = node
        self.interval = interval
        self.checkEvery = checkEvery
        self.credential = credential
        self.renewRetry = renewRetry
        self.report = report
        self.logger = logger
    }

    /// The NOC's answers to renewal requests, from libmosquitto's thread.
    private final class Inbox: Sendable {
        let certificate = Mutex<[UInt8]?>(nil)
    }

    public func run() async throws {
        let current = Mutex<MQTTClient?>(nil)
        let logger = self.logger
        try? await cancelWhenGracefulShutdown {
            var delay = Duration.seconds(5)
            while true {
                do {
                    let inbox = Inbox()
                    let client = try self.client(inbox)
                    current.withLock { $0 = client }
                    try await self.session(client, inbox)
                    // Renewed: log in again with the new certificate.
                    client.stop()
                    delay = .seconds(5)
                } catch is CancellationError {
                    return
                } catch {
                    // A key or CA file that cannot be used (a copy missing, a disk error): said, and tried again.
                    logger.error("telemetry stopped; trying again", metadata: ["error": "\(error)", "retry-in": "\(delay)"])
                    current.withLock { $0?.stop() }
                    try await Task.sleep(for: delay)
                    delay = min(delay * 2, .seconds(600))
                }
            }
        }
        // A clean stop sends no will: say it, and give libmosquitto a moment to deliver it.
        guard let client = current.withLock({ $0 }) else { return }
        try? client.publish(topic: NodeReport.statusTopic(node: node), payload: Array("offline".utf8), retain: true)
        try? await Task.sleep(for: .milliseconds(300))
        client.stop()
    }

    private func client(_ inbox: Inbox) throws -> MQTTClient {
        let node = self.node
        let answers = credential == nil ? [] : [NodeReport.certificateTopic(node: node)]
        let client = try MQTTClient(clientID: "mm-" + node + "-telemetry", subscriptions: answers) { message in
            inbox.certificate.withLock { $0 = message.payload }
        }
        if let credential {
            try client.useTLS(caFile: credential.caPath, certificateFile: credential.certificatePath, keyFile: credential.keyPath)
        } else if broker.tls {
            try client.useTLS()
        }
        try client.setWill(topic: NodeReport.statusTopic(node: node), payload: Array("offline".utf8))
        return client
    }

    /// Reports until a renewed certificate is in place (then returns) or the task is cancelled.
    private func session(_ client: MQTTClient, _ inbox: Inbox) async throws {
        let (logger, node, credential) = (self.logger, self.node, self.credential)
        try await client.connect(to: broker) { error, delay in
            if let notAfter = try? credential?.certificate().notAfter, notAfter < Date() {
                logger.error(
                    "the watchtower certificate has expired; the NOC must issue a new one (mm-image fleet issue)",
                    metadata: ["expired": "\(notAfter)", "certificate": "\(credential!.certificatePath)", "error": "\(error)"]
                )
            } else {
                logger.warning("telemetry broker unreachable; retrying", metadata: ["error": "\(error)", "retry-in": "\(delay)"])
            }
        }
        logger.info("reporting to the watchtower", metadata: ["broker": "\(broker.description)", "topic": "\(NodeReport.stateTopic(node: node))"])
        var last: NodeReport?
        var lastSent = ContinuousClock.now
        var wasConnected = false
        var lastRequest: ContinuousClock.Instant?
        var lastLoad: ContinuousClock.Instant?
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
            if let load, connected, lastLoad.map({ ContinuousClock.now - $0 >= loadInterval }) ?? true {
                do {
                    try client.publish(topic: NodeLoad.topic(node: node), payload: try load().json(), retain: true)
                    lastLoad = ContinuousClock.now
                } catch {
                    logger.warning("load not published", metadata: ["error": "\(error)"])
                }
            }
            if let credential {
                if let pem = inbox.certificate.withLock({ value in defer { value = nil }; return value }) {
                    do {
                        if case .renewed(let notAfter) = try credential.install(pem, node: node) {
                            logger.notice("watchtower certificate renewed; logging in with it", metadata: ["valid-until": "\(notAfter)"])
                            return
                        }
                    } catch {
                        logger.error("refused the certificate the NOC sent", metadata: ["why": "\(error)"])
                    }
                }
                if connected, let due = try? credential.renewalDue(), Date() >= due, lastRequest.map({ ContinuousClock.now - $0 >= renewRetry }) ?? true {
                    do {
                        try client.publish(topic: NodeReport.credentialRequestTopic(node: node), payload: try credential.request(node: node))
                        lastRequest = ContinuousClock.now
                        logger.info("asked the NOC to renew the watchtower certificate", metadata: ["expires": "\((try? credential.certificate().notAfter).map { "\($0)" } ?? "?")"])
                    } catch {
                        logger.error("cannot ask for a new watchtower certificate", metadata: ["why": "\(error)"])
                    }
                }
            }
            try await Task.sleep(for: checkEvery)
        }
    }
}
