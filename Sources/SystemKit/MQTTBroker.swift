import Foundation

/// Where an MQTT broker is: `mqtt://HOST[:PORT]` (1883) or `mqtts://HOST[:PORT]` (8883, TLS).
public struct MQTTBroker: Sendable, Equatable {
    public var host: String
    public var port: Int
    public var tls: Bool

    /// Parses `url`; `role` names what it is for in the error (`the MQTT broker`, `the telemetry target`).
    public init(url text: String, role: String = "the MQTT broker") throws(MQTTError) {
        guard let url = URL(string: text), let scheme = url.scheme, scheme == "mqtt" || scheme == "mqtts", let host = url.host, !host.isEmpty else {
            throw MQTTError("\(role) must be mqtt://HOST[:PORT] or mqtts://HOST[:PORT], not \(text)", code: 0)
        }
        self.host = host
        self.tls = scheme == "mqtts"
        self.port = url.port ?? (tls ? 8883 : 1883)
    }

    public var description: String { "\(host):\(port)" }
}

extension MQTTClient {
    /// Connects to `broker` (TLS when it says so), retrying 1 s doubling to 2 min until it answers;
    /// after the first connection libmosquitto reconnects by itself. `onRetry` hears each failure.
    public func connect(to broker: MQTTBroker, onRetry: (MQTTError, Duration) -> Void) async throws {
        var delay = Duration.seconds(1)
        while true {
            do {
                try start(host: broker.host, port: broker.port)
                return
            } catch {
                onRetry(error, delay)
                try await Task.sleep(for: delay)
                delay = min(delay * 2, .seconds(120))
            }
        }
    }
}
