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
    public let host: String
    public let port: Int
    public let tls: Bool
    public let topicPrefix: String
    private let clientID: String
    private let projects: Set<String>
    private let onPush: @Sendable (String) -> Void
    private let logger: Logger

    /// `broker` is `mqtt://HOST[:PORT]` (1883) or `mqtts://HOST[:PORT]` (8883).
    public init(
        broker: String, topicPrefix: String, clientID: String, projects: [String], logger: Logger, onPush: @escaping @Sendable (String) -> Void
    ) throws {
        guard let url = URL(string: broker), let scheme = url.scheme, scheme == "mqtt" || scheme == "mqtts", let host = url.host, !host.isEmpty else {
            throw MQTTError("the MQTT broker must be mqtt://HOST[:PORT] or mqtts://HOST[:PORT], not \(broker)", code: 0)
        }
        self.host = host
        self.tls = scheme == "mqtts"
        self.port = url.port ?? (tls ? 8883 : 1883)
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
        if tls { try client.useTLS() }
        let (host, port, topicPrefix) = (self.host, self.port, self.topicPrefix)
        // Until the first connection, retry here (1 s doubling to 2 min); after it, libmosquitto
        // reconnects by itself. Either way the interval keeps syncing; pushes only make it sooner.
        try? await cancelWhenGracefulShutdown {
            var delay = Duration.seconds(1)
            while true {
                do {
                    try client.start(host: host, port: port)
                    break
                } catch {
                    logger.warning("MQTT broker unreachable; retrying", metadata: ["error": "\(error)", "retry-in": "\(delay)"])
                    try await Task.sleep(for: delay)
                    delay = min(delay * 2, .seconds(120))
                }
            }
            logger.info("listening for pushes", metadata: ["broker": "\(host):\(port)", "topics": "\(topicPrefix)/+"])
            while true { try await Task.sleep(for: .seconds(3600)) }
        }
        client.stop()
    }
}
