import Foundation
import Logging
import ServiceLifecycle
import SystemKit

/// Takes the upstream's "this project changed" messages over MQTT and hands them to the sync
/// service, as the FCIX nodes' mqtt-exec does, but with a persistent session (QoS 1, a stable
/// client id) so a node that was offline still gets what was published meanwhile.
///
/// A message on `PREFIX/PROJECT` (FCIX: `rsync/mirror.fcix.net/PROJECT`) pushes PROJECT if the
/// node carries it; anything else is logged and ignored.
public final class PushListener: Service, Sendable {
    public let broker: MQTTBroker
    public let topicPrefix: String
    private let clientID: String
    private let projects: Set<String>
    private let onPush: @Sendable (String) -> Void
    private let logger: Logger

    /// `broker` is `mqtt://HOST[:PORT]` (1883) or `mqtts://HOST[:PORT]` (8883).
    public init(
        broker: String, topicPrefix: String, clientID: String, projects: [String], logger: Logger, onPush: @escaping @Sendable (String) -> Void
    ) throws {
        self.broker = try MQTTBroker(url: broker)
        self.topicPrefix = topicPrefix.hasSuffix("/") ? String(topicPrefix.dropLast()) : topicPrefix
        self.clientID = clientID
        self.projects = Set(projects)
        self.onPush = onPush
        self.logger = logger
    }

    /// The project a topic names, if the node carries it.
    public func project(forTopic topic: String) -> String? {
        guard topic.hasPrefix(topicPrefix + "/") else { return nil }
        let name = String(topic.dropFirst(topicPrefix.count + 1))
        return projects.contains(name) ? name : nil
    }

    public func run() async throws {
        let logger = self.logger
        let onPush = self.onPush
        let client = try MQTTClient(clientID: clientID, subscriptions: [topicPrefix + "/+"]) { [self] message in
            if let project = project(forTopic: message.topic) {
                logger.info("push", metadata: ["project": "\(project)", "topic": "\(message.topic)"])
                onPush(project)
            } else {
                logger.debug("push for a project this node does not carry", metadata: ["topic": "\(message.topic)"])
            }
        }
        if broker.tls { try client.useTLS() }
        let (broker, topicPrefix) = (self.broker, self.topicPrefix)
        // Until the first connection, retry here; after it, libmosquitto reconnects by itself.
        // Either way the interval keeps syncing; pushes only make it sooner.
        try? await cancelWhenGracefulShutdown {
            try await client.connect(to: broker) { error, delay in
                logger.warning("MQTT broker unreachable; retrying", metadata: ["error": "\(error)", "retry-in": "\(delay)"])
            }
            logger.info("listening for pushes", metadata: ["broker": "\(broker.description)", "topics": "\(topicPrefix)/+"])
            while true { try await Task.sleep(for: .seconds(3600)) }
        }
        client.stop()
    }
}
