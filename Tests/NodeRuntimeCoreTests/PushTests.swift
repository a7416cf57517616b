import Foundation
import Logging
import NodeRuntimeCore
import ServiceLifecycle
import SystemKit
import Testing

/// Pushes over MQTT, through a real mosquitto broker and libmosquitto.
@Suite("Pushes over MQTT", .serialized)
struct PushTests {
    /// Collects pushed projects from the listener's thread.
    final class Pushes: @unchecked Sendable {
        private let lock = NSLock()
        private var projects: [String] = []
        func add(_ project: String) { lock.withLock { projects.append(project) } }
        var all: [String] { lock.withLock { projects } }
    }

    /// Runs a listener for `body`, then shuts it down.
    func withListener(
        _ broker: MosquittoBroker, clientID: String = "mm-test-\(UUID().uuidString)", pushes: Pushes, _ body: () async throws -> Void
    ) async throws {
        let listener = try PushListener(
            broker: "mqtt://127.0.0.1:\(broker.port)", topicPrefix: "rsync/mirror.example", clientID: clientID, projects: ["almalinux", "ubuntu"],
            logger: Logger(label: "test")
        ) { pushes.add($0) }
        let group = ServiceGroup(services: [listener], logger: Logger(label: "test"))
        let task = Task { try await group.run() }
        do { try await body() } catch {
            await group.triggerGracefulShutdown()
            _ = try? await task.value
            throw error
        }
        await group.triggerGracefulShutdown()
        try await task.value
    }

    @Test("shutdown while messages arrive and while the broker is gone: the network thread ends by itself, no callback is cut off", .timeLimit(.minutes(2)))
    func cleanStop() async throws {
        let broker = try MosquittoBroker()
        defer { broker.stop() }
        let received = Pushes()
        let client = try MQTTClient(clientID: "mm-stop-\(UUID().uuidString)", subscriptions: ["stop/+"]) { received.add($0.topic) }
        try client.start(host: "127.0.0.1", port: broker.port)
        #expect(try await eventually(seconds: 60) { client.isConnected })
        // Messages in flight while stopping: the callback runs to its end or not at all.
        let publisher = Task { for n in 0..<20 { try? await broker.publish("stop/\(n)") } }
        _ = try await eventually(seconds: 60) { !received.all.isEmpty }
        client.stop()
        await publisher.value
        let afterStop = received.all.count
        try await Task.sleep(for: .milliseconds(300))
        #expect(received.all.count == afterStop, "a message was delivered after stop()")

        // Again, but the broker is gone: the thread sits in its reconnect delay (1 s doubling to 2 min).
        let second = try MQTTClient(clientID: "mm-stop-\(UUID().uuidString)", subscriptions: ["stop/+"]) { _ in }
        try second.start(host: "127.0.0.1", port: broker.port)
        #expect(try await eventually(seconds: 60) { second.isConnected })
        broker.stop()
        #expect(try await eventually(seconds: 60) { !second.isConnected })
        try await Task.sleep(for: .seconds(3))  // into a reconnect delay
        second.stop()  // returns: the time limit fails the test if it hangs
    }

    @Test("a message on PREFIX/PROJECT pushes the project; other topics and projects are ignored")
    func push() async throws {
        let broker = try MosquittoBroker()
        let pushes = Pushes()
        try await withListener(broker, pushes: pushes) {
            // Published until the subscription is in place (the listener connects in the background).
            let arrived = try await eventually {
                try? await broker.publish("rsync/mirror.example/almalinux")
                return pushes.all.contains("almalinux")
            }
            #expect(arrived)
            try await broker.publish("rsync/mirror.example/gentoo")
            try await broker.publish("rsync/elsewhere/ubuntu")
            try await broker.publish("rsync/mirror.example/ubuntu")
            let second = try await eventually { pushes.all.contains("ubuntu") }
            #expect(second)
            #expect(Set(pushes.all) == ["almalinux", "ubuntu"])
        }
    }

    @Test("a node that was offline gets what was published meanwhile (persistent session, QoS 1)")
    func offline() async throws {
        let broker = try MosquittoBroker()
        let clientID = "mm-offline-\(UUID().uuidString)"
        let first = Pushes()
        try await withListener(broker, clientID: clientID, pushes: first) {
            let arrived = try await eventually {
                try? await broker.publish("rsync/mirror.example/almalinux")
                return first.all.contains("almalinux")
            }
            #expect(arrived)
        }
        // Offline now: the broker keeps this for the session.
        try await broker.publish("rsync/mirror.example/ubuntu")
        let second = Pushes()
        try await withListener(broker, clientID: clientID, pushes: second) {
            let queued = try await eventually { second.all.contains("ubuntu") }
            #expect(queued, "queued while offline, delivered on reconnect")
        }
    }

    @Test("a broker that is down at start is reached when it comes up")
    func reconnect() async throws {
        let broker = try MosquittoBroker()
        broker.stop()
        let pushes = Pushes()
        try await withListener(broker, pushes: pushes) {
            try await Task.sleep(for: .seconds(1))
            try broker.start()
            let reached = try await eventually {
                try? await broker.publish("rsync/mirror.example/ubuntu")
                return pushes.all.contains("ubuntu")
            }
            #expect(reached)
        }
    }

    @Test("broker addresses: mqtt and mqtts with their default ports; anything else refused")
    func addresses() throws {
        func listener(_ broker: String) throws -> PushListener {
            try PushListener(broker: broker, topicPrefix: "p/", clientID: "x", projects: ["a"], logger: Logger(label: "test")) { _ in }
        }
        let plain = try listener("mqtt://broker.example")
        #expect(plain.broker.port == 1883 && !plain.broker.tls && plain.topicPrefix == "p")
        let secure = try listener("mqtts://broker.example:9883")
        #expect(secure.broker == (try MQTTBroker(url: "mqtts://broker.example:9883")) && secure.broker.port == 9883 && secure.broker.tls && secure.broker.host == "broker.example")
        #expect(plain.project(forTopic: "p/a") == "a" && plain.project(forTopic: "p/b") == nil && plain.project(forTopic: "q/a") == nil)
        #expect(throws: (any Error).self) { try listener("http://broker.example") }
    }
}
