import CMosquitto
import Foundation
import Synchronization

/// An MQTT client over libmosquitto: one connection, kept up by libmosquitto's own network
/// thread, reconnecting with backoff, re-subscribing on every connect.
///
/// Sessions are persistent (clean session off, a stable client id) and subscriptions QoS 1, so
/// messages published while the node was offline are delivered when it is back (the broker keeps
/// them for the session).
public final class MQTTClient: @unchecked Sendable {
    /// One received message.
    public struct Message: Sendable, Equatable {
        public var topic: String
        public var payload: [UInt8]
    }

    private let handle: OpaquePointer
    private let subscriptions: [String]
    private let onMessage: @Sendable (Message) -> Void
    private let connectedNow = Mutex(false)
    private var started = false

    private static let libraryInit: Void = { mosquitto_lib_init() }()

    /// `clientID` must be stable across restarts for the broker to keep the session; a one-off
    /// reader passes `cleanSession` so the broker keeps nothing for it afterwards.
    public init(clientID: String, subscriptions: [String], cleanSession: Bool = false, onMessage: @escaping @Sendable (Message) -> Void) throws(MQTTError) {
        _ = Self.libraryInit
        self.subscriptions = subscriptions
        self.onMessage = onMessage
        guard let handle = mosquitto_new(clientID, cleanSession, nil) else {
            throw MQTTError("cannot create an MQTT client (out of memory, or an empty client id)", code: 0)
        }
        self.handle = handle
        mosquitto_user_data_set(handle, Unmanaged.passUnretained(self).toOpaque())
        mosquitto_connect_callback_set(handle) { _, context, result in
            guard let context else { return }
            Unmanaged<MQTTClient>.fromOpaque(context).takeUnretainedValue().connected(result)
        }
        mosquitto_disconnect_callback_set(handle) { _, context, _ in
            guard let context else { return }
            Unmanaged<MQTTClient>.fromOpaque(context).takeUnretainedValue().connectedNow.withLock { $0 = false }
        }
        mosquitto_message_callback_set(handle) { _, context, message in
            guard let context, let message, let topic = message.pointee.topic else { return }
            let payload = message.pointee.payload.map { Array(UnsafeRawBufferPointer(start: $0, count: Int(message.pointee.payloadlen))) } ?? []
            Unmanaged<MQTTClient>.fromOpaque(context).takeUnretainedValue().onMessage(Message(topic: String(cString: topic), payload: payload))
        }
        // Reconnect after 1 s, doubling up to 2 minutes.
        mosquitto_reconnect_delay_set(handle, 1, 120, true)
    }

    deinit {
        stop()
        mosquitto_destroy(handle)
    }

    /// Trust the CA certificates in `directory` for an mqtts:// broker.
    public func useTLS(caDirectory: String = "/etc/ssl/certs") throws(MQTTError) {
        let result = mosquitto_tls_set(handle, nil, caDirectory, nil, nil, nil)
        guard result == MOSQ_ERR_SUCCESS.rawValue else { throw MQTTError("cannot set up TLS with the CAs in \(caDirectory)", code: result) }
    }

    /// TLS with a client certificate: trust only the CA in `caFile` (the fleet's, which signed the
    /// broker's certificate too) and log in with `certificateFile` and its `keyFile`. Before `start`.
    public func useTLS(caFile: String, certificateFile: String, keyFile: String) throws(MQTTError) {
        let result = mosquitto_tls_set(handle, caFile, nil, certificateFile, keyFile, nil)
        guard result == MOSQ_ERR_SUCCESS.rawValue else {
            throw MQTTError("cannot set up TLS with the CA \(caFile), the certificate \(certificateFile) and the key \(keyFile)", code: result)
        }
    }

    /// Log in as `username` (the broker's ACL decides what it may publish). Before `start`.
    public func useCredentials(username: String, password: String) throws(MQTTError) {
        let result = mosquitto_username_pw_set(handle, username, password)
        guard result == MOSQ_ERR_SUCCESS.rawValue else { throw MQTTError("cannot set the MQTT credentials", code: result) }
    }

    /// The message the broker publishes for us when the connection is lost without a disconnect
    /// (a crash, a power cut, a cable pulled): QoS 1, retained. Before `start`.
    public func setWill(topic: String, payload: [UInt8], retain: Bool = true) throws(MQTTError) {
        let result = payload.withUnsafeBytes { mosquitto_will_set(handle, topic, Int32($0.count), $0.baseAddress, 1, retain) }
        guard result == MOSQ_ERR_SUCCESS.rawValue else { throw MQTTError("cannot set the MQTT last will on \(topic)", code: result) }
    }

    /// Queues a QoS 1 message; libmosquitto's thread sends it and resends it until the broker
    /// acknowledges, across reconnects. Throws when it cannot even be queued (not connected yet
    /// counts as queued: it goes out on connect).
    public func publish(topic: String, payload: [UInt8], retain: Bool = false) throws(MQTTError) {
        let result = payload.withUnsafeBytes { mosquitto_publish(handle, nil, topic, Int32($0.count), $0.baseAddress, 1, retain) }
        guard result == MOSQ_ERR_SUCCESS.rawValue || result == MOSQ_ERR_NO_CONN.rawValue else {
            throw MQTTError("cannot publish on \(topic): \(String(cString: mosquitto_strerror(result)))", code: result)
        }
    }

    /// Connects to `host:port` and starts libmosquitto's network thread, which then keeps the
    /// connection up (reconnecting with backoff) until `stop()`. Throws when the broker cannot be
    /// reached now: libmosquitto only retries connections that once succeeded, so the caller
    /// retries this.
    public func start(host: String, port: Int, keepAlive: Int = 60) throws(MQTTError) {
        guard !started else { return }
        let result = mosquitto_connect_async(handle, host, Int32(port), Int32(keepAlive))
        guard result == MOSQ_ERR_SUCCESS.rawValue else {
            let reason = result == MOSQ_ERR_ERRNO.rawValue ? String(cString: strerror(errno)) : String(cString: mosquitto_strerror(result))
            throw MQTTError("cannot reach the MQTT broker \(host):\(port): \(reason)", code: 0)
        }
        let loop = mosquitto_loop_start(handle)
        guard loop == MOSQ_ERR_SUCCESS.rawValue else { throw MQTTError("cannot start the MQTT network thread", code: loop) }
        started = true
    }

    /// Disconnects and stops the network thread.
    ///
    /// Never forced: a forced stop cancels the thread wherever it is, possibly inside one of our
    /// callbacks (Swift code holding a lock). The disconnect tells the thread to finish, and a
    /// non-forced stop also wakes it from a reconnect delay, so it ends promptly even when the
    /// broker is gone.
    public func stop() {
        guard started else { return }
        started = false
        mosquitto_disconnect(handle)
        mosquitto_loop_stop(handle, false)
    }

    /// Whether the broker accepted the connection (and it is still up).
    public var isConnected: Bool { connectedNow.withLock { $0 } }

    private func connected(_ result: Int32) {
        connectedNow.withLock { $0 = result == 0 }
        guard result == 0 else { return }
        for topic in subscriptions { mosquitto_subscribe(handle, nil, topic, 1) }
    }
}
