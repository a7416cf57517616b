import Foundation
import Logging
import MicromirrorKit
import SystemKit

/// The NOC's side of credential renewal: listens on the watchtower's broker for the nodes'
/// renewal requests (`micromirror/nodes/NODE/csr`), has the fleet CA answer each (the request must
/// be signed by the node's pinned identity key, and the node not revoked), and publishes the new
/// certificate retained on `micromirror/nodes/NODE/certificate`, where only that node may read it.
public final class FleetRenewals: Sendable {
    public let broker: MQTTBroker
    public let authority: FleetAuthority
    public let days: Int
    private let client: MQTTClient
    private let requests: AsyncStream<MQTTClient.Message>
    private let logger: Logger

    /// One answered request.
    public struct Outcome: Sendable {
        public var node: String
        /// The new certificate's end, or nil when refused.
        public var notAfter: Date?
        /// Why it was refused.
        public var refusal: String?
    }

    /// `broker` is the NOC's own listener (`mqtt://127.0.0.1:1883` in the generated configuration).
    public init(broker: String, authority: FleetAuthority, days: Int = FleetAuthority.defaultDays, logger: Logger) throws {
        self.broker = try MQTTBroker(url: broker, role: "the watchtower's broker")
        self.authority = authority
        self.days = days
        self.logger = logger
        let (stream, continuation) = AsyncStream.makeStream(of: MQTTClient.Message.self)
        requests = stream
        // A persistent session: requests sent while the NOC's service was down wait for it.
        client = try MQTTClient(clientID: "mm-image-fleet-renewals", subscriptions: [NodeReport.topicPrefix + "/+/csr"]) { continuation.yield($0) }
        if self.broker.tls { try client.useTLS() }
    }

    /// Answers requests until cancelled; `onOutcome` hears each.
    public func run(onOutcome: @Sendable (Outcome) -> Void = { _ in }) async throws {
        let logger = self.logger
        try await client.connect(to: broker) { error, delay in
            logger.warning("the watchtower's broker is unreachable; retrying", metadata: ["error": "\(error)", "retry-in": "\(delay)"])
        }
        defer { client.stop() }
        for await message in requests {
            try Task.checkCancellation()
            onOutcome(answer(message))
        }
    }

    /// Answers one request; never throws: a bad request is refused and logged.
    func answer(_ message: MQTTClient.Message) -> Outcome {
        let levels = message.topic.split(separator: "/", omittingEmptySubsequences: false)
        let node = levels.count == 4 ? String(levels[2]) : message.topic
        do {
            let certificate = try authority.renew(node: node, request: message.payload, days: days)
            try client.publish(topic: NodeReport.certificateTopic(node: node), payload: try certificate.pem(), retain: true)
            logger.notice("renewed a node's certificate", metadata: ["node": "\(node)", "valid-until": "\(certificate.notAfter)", "serial": "\(certificate.serial)"])
            return Outcome(node: node, notAfter: certificate.notAfter)
        } catch {
            logger.warning("refused a renewal request", metadata: ["node": "\(node)", "why": "\(error)"])
            return Outcome(node: node, refusal: "\(error)")
        }
    }
}
