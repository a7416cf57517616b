import Foundation
import ImageBuilderCore
import Logging
import MicromirrorKit
import MicromirrorTestSupport
import NodeRuntimeCore
import ServiceLifecycle
import SystemKit
import Synchronization
import Testing

/// The nodes' watchtower credentials against a real mosquitto run with the configuration
/// `mm-image fleet ca` writes: each node logs in with a certificate for its own identity key, may
/// publish only under its own topic and cannot take another's session; expired, foreign and revoked
/// certificates are refused; a node renews its certificate itself through the NOC's service.
@Suite("Watchtower credentials", .serialized)
struct FleetCredentialTests {
    /// mosquitto with the fleet CA's configuration (as root: the test's files are root's).
    final class Broker: @unchecked Sendable {
        let process = Process()
        let nodePort: Int
        let localPort: Int
        let log: String

        init(ca: String, nodePort: Int, localPort: Int) throws {
            self.nodePort = nodePort
            self.localPort = localPort
            log = ca + "/broker.log"
            let config = ca + "/test.conf"
            try ("user root\n" + String(contentsOfFile: ca + "/mosquitto.conf", encoding: .utf8)).write(toFile: config, atomically: true, encoding: .utf8)
            FileManager.default.createFile(atPath: log, contents: nil)
            // Through perl to clear the signal mask the test runner hands down: mosquitto re-reads
            // the CRL on SIGHUP, which would stay blocked.
            process.executableURL = URL(fileURLWithPath: "/usr/bin/perl")
            process.arguments = ["-MPOSIX", "-e", "sigprocmask(SIG_SETMASK, POSIX::SigSet->new) or die; exec @ARGV or die", "mosquitto", "-c", config]
            process.standardOutput = FileHandle(forWritingAtPath: log)
            process.standardError = FileHandle(forWritingAtPath: log)
            try process.run()
            guard RsyncDaemon.waitForListener(port: nodePort, while: process), RsyncDaemon.waitForListener(port: localPort, while: process) else {
                throw TestError("mosquitto did not start: \((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
            }
        }

        func reload() { kill(process.processIdentifier, SIGHUP) }

        deinit {
            if process.isRunning {
                kill(process.processIdentifier, SIGKILL)
                process.waitUntilExit()
            }
        }
    }

    /// `mosquitto_pub` on the node listener with a certificate and key: its exit status and output.
    static func publish(_ broker: Broker, ca: String, certificate: String, key: String, topic: String, message: String, clientID: String? = nil) async throws -> ToolOutput {
        var arguments = [
            "-h", "localhost", "-p", "\(broker.nodePort)", "--cafile", ca, "--cert", certificate, "--key", key, "-q", "1", "-r", "-t", topic, "-m", message,
        ]
        if let clientID { arguments += ["-i", clientID] }
        return try await ToolRun.run("mosquitto_pub", arguments)
    }

    /// The messages on `topic` (the retained one first) seen on the NOC's local listener within
    /// `window`. In-process: mosquitto_sub's -W timeout is a SIGALRM, which the test runner blocks.
    static func messages(_ broker: Broker, _ topic: String, window: Duration = .milliseconds(700), during: () async throws -> Void = {}) async throws -> [String] {
        let seen = Mutex<[String]>([])
        let client = try MQTTClient(clientID: "test-\(UUID().uuidString.prefix(8))", subscriptions: [topic], cleanSession: true) { message in
            seen.withLock { $0.append(String(decoding: message.payload, as: UTF8.self)) }
        }
        try client.start(host: "127.0.0.1", port: broker.localPort)
        defer { client.stop() }
        let deadline = ContinuousClock.now + .seconds(10)
        while !client.isConnected, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
        try await Task.sleep(for: .milliseconds(200))
        try await during()
        try await Task.sleep(for: window)
        return seen.withLock { $0 }
    }

    /// The retained message on `topic` (nil: none).
    static func retained(_ broker: Broker, _ topic: String) async throws -> String? {
        try await messages(broker, topic).last
    }

    static func report(_ node: String) -> NodeReport {
        NodeReport(
            node: node, sponsor: node, version: "0.4.0", build: 104, slot: "a", blessed: true, rolledBack: [], addresses: [], projects: [],
            sentBytes: 0, receivedBytes: 0, dataFreeBytes: 0, time: Date()
        )
    }

    /// A node's credential as it is on mm-config: `identity/node.key`, `credential/{node,ca}.crt`.
    static func credential(_ authority: FleetAuthority, node: String, in dir: String, issued: Date = Date(), days: Int = 30) throws -> NodeCredential {
        let (key, certificate) = try authority.issueIdentity(node: node, days: days, now: issued)
        try FileManager.default.createDirectory(atPath: dir + "/credential", withIntermediateDirectories: true)
        try AtomicFile.write(try key.pem(), to: dir + "/node.key", mode: 0o600)
        try AtomicFile.write(try certificate.pem(), to: dir + "/credential/node.crt")
        try AtomicFile.write(try authority.certificate.pem(), to: dir + "/credential/ca.crt")
        return NodeCredential(directory: dir + "/credential", keyPath: dir + "/node.key")
    }

    @Test("two nodes log in with their own certificates and fleet lists both; one publishing under the other's topic or taking its client id changes nothing; an expired, a foreign and a revoked certificate are refused; a node past two thirds of its certificate renews it through the NOC's service and logs in with the new one")
    func credentialsOverMosquitto() async throws {
        let dir = try ToolRun.scratchDirectory("credentials")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let ca = dir + "/ca"
        // The NOC's CA and broker configuration, made by the program.
        let (nodePort, localPort) = (try RsyncDaemon.freePort(), try RsyncDaemon.freePort())
        let made = try await ToolRun.run(
            SyncCommandTests.binaries + "/mm-image",
            ["fleet", "ca", "--ca", ca, "--broker-name", "localhost", "--broker-name", "127.0.0.1", "--node-port", "\(nodePort)", "--local-port", "\(localPort)"]
        )
        #expect(made.status == 0, "\(made.combined)")
        let again = try await ToolRun.run(SyncCommandTests.binaries + "/mm-image", ["fleet", "ca", "--ca", ca, "--broker-name", "localhost"])
        #expect(again.status != 0 && again.stderr.contains("already holds a fleet CA"), "a second CA would lock every node out: \(again.combined)")
        let broker = try Broker(ca: ca, nodePort: nodePort, localPort: localPort)
        let authority = try FleetAuthority(directory: ca)
        let target = "mqtts://localhost:\(nodePort)"

        // Node A: the real program, its credential made by `mm-image fleet issue --out` and laid out as on mm-config.
        let a = "isp-a.mm.fcix.net", b = "isp-b.mm.fcix.net"
        let issued = try await ToolRun.run(SyncCommandTests.binaries + "/mm-image", ["fleet", "issue", a, "--ca", ca, "--out", dir + "/a-issued"])
        #expect(issued.status == 0, "\(issued.combined)")
        try FileManager.default.createDirectory(atPath: dir + "/a/credential", withIntermediateDirectories: true)
        for name in ["node.crt", "ca.crt"] { try FileManager.default.copyItem(atPath: dir + "/a-issued/" + name, toPath: dir + "/a/credential/" + name) }
        try FileManager.default.copyItem(atPath: dir + "/a-issued/node.key", toPath: dir + "/a/node.key")
        let example = try String(contentsOfFile: TelemetryTests.packageRoot + "/nodes/example.yaml", encoding: .utf8)
        try example.replacingOccurrences(of: "name: example-isp", with: "name: isp-a").replacingOccurrences(of: "target: mqtts://watchtower.fcix.net:8883", with: "target: " + target)
            .write(toFile: dir + "/a.yaml", atomically: true, encoding: .utf8)
        let nodeA = Process()
        nodeA.executableURL = URL(fileURLWithPath: SyncCommandTests.binaries + "/mm-node")
        nodeA.arguments = [
            "run", "--services", "telemetry", "--config", dir + "/a.yaml", "--root", dir, "--sync-state", dir + "/state", "--require-mount", "none",
            "--credential", dir + "/a/credential", "--identity-key", dir + "/a/node.key",
        ]
        nodeA.standardOutput = FileHandle.nullDevice
        nodeA.standardError = FileHandle.nullDevice
        try nodeA.run()
        defer { if nodeA.isRunning { kill(nodeA.processIdentifier, SIGKILL) } }
        // Node B: a publisher in this process.
        let credentialB = try Self.credential(authority, node: b, in: dir + "/b")
        let publisherB = try TelemetryPublisher(target: target, node: b, checkEvery: .milliseconds(200), credential: credentialB, logger: Logger(label: "b")) { Self.report(b) }
        let group = ServiceGroup(services: [publisherB], logger: Logger(label: "test"))
        let running = Task { try await group.run() }
        defer { running.cancel() }

        var nodes: [FleetView.Node] = []
        #expect(try await eventually(seconds: 60) {
            nodes = (try? FleetView(messages: await FleetView.retained(broker: "mqtt://127.0.0.1:\(localPort)", quiet: .milliseconds(400)), downAfter: 900).nodes) ?? []
            return Set(nodes.filter(\.up).map(\.node)) == [a, b]
        }, "\(nodes.map { ($0.node, $0.up) })")
        let listing = try await ToolRun.run(SyncCommandTests.binaries + "/mm-image", ["fleet", "--broker", "mqtt://127.0.0.1:\(localPort)", "--json"])
        #expect(listing.status == 0 && listing.stdout.contains(a) && listing.stdout.contains(b), "\(listing.combined)")
        let stateB = try #require(try await Self.retained(broker, NodeReport.stateTopic(node: b)))

        // A, logged in with its own certificate, publishes under B's topic: the ACL drops it.
        let forged = try await Self.publish(
            broker, ca: ca + "/ca.crt", certificate: dir + "/a/credential/node.crt", key: dir + "/a/node.key", topic: NodeReport.stateTopic(node: b), message: "forged"
        )
        #expect(forged.status == 0, "the broker accepts the connection, not the message: \(forged.combined)")
        let own = try await Self.publish(
            broker, ca: ca + "/ca.crt", certificate: dir + "/a/credential/node.crt", key: dir + "/a/node.key", topic: "micromirror/nodes/\(a)/probe", message: "mine"
        )
        #expect(own.status == 0, "\(own.combined)")
        #expect(try await eventually(seconds: 10) { (try? await Self.retained(broker, "micromirror/nodes/\(a)/probe")) == "mine" }, "A may publish under its own topic")
        #expect(try await Self.retained(broker, NodeReport.stateTopic(node: b)) == stateB, "B's state must be B's")
        // A asks for B's client id: the broker uses A's name instead, so B's session stays (no takeover, no will).
        // B's status is watched all along: a takeover would show its will, `offline`, before B came back.
        let seen = try await Self.messages(broker, NodeReport.statusTopic(node: b), window: .seconds(2)) {
            let takeover = try await Self.publish(
                broker, ca: ca + "/ca.crt", certificate: dir + "/a/credential/node.crt", key: dir + "/a/node.key", topic: "micromirror/nodes/\(a)/probe", message: "again",
                clientID: "mm-\(b)-telemetry"
            )
            #expect(takeover.status == 0, "\(takeover.combined)")
        }
        #expect(seen.first == "online" && !seen.contains("offline"), "B was thrown off: \(seen)")

        // A certificate for B's name from another CA: refused at the handshake.
        let foreign = try FleetAuthority.create(directory: dir + "/other-ca", brokerNames: ["localhost"])
        let fake = try Self.credential(foreign, node: b, in: dir + "/fake")
        let refusedForeign = try await Self.publish(broker, ca: ca + "/ca.crt", certificate: fake.certificatePath, key: fake.keyPath, topic: NodeReport.stateTopic(node: b), message: "fake")
        #expect(refusedForeign.status != 0, "\(refusedForeign.combined)")
        // An expired certificate (issued 40 days ago for 30): refused.
        let expired = try Self.credential(authority, node: "isp-c.mm.fcix.net", in: dir + "/c", issued: Date() - 40 * 86400)
        let refusedExpired = try await Self.publish(
            broker, ca: ca + "/ca.crt", certificate: expired.certificatePath, key: expired.keyPath, topic: "micromirror/nodes/isp-c.mm.fcix.net/probe", message: "late"
        )
        #expect(refusedExpired.status != 0, "\(refusedExpired.combined)")
        #expect(try await Self.retained(broker, NodeReport.stateTopic(node: b)) == stateB)

        // Renewal: D's certificate was issued 25 days ago for 30 (renewal due since day 20). The NOC's
        // service answers; D checks the new certificate, puts it in place and logs in with it.
        let d = "isp-d.mm.fcix.net"
        let credentialD = try Self.credential(authority, node: d, in: dir + "/d", issued: Date() - 25 * 86400)
        let oldD = try credentialD.certificate()
        try FileManager.default.copyItem(atPath: credentialD.certificatePath, toPath: dir + "/d/old.crt")
        let renewals = try FleetRenewals(broker: "mqtt://127.0.0.1:\(localPort)", authority: authority, logger: Logger(label: "renewals"))
        let outcomes = Mutex<[FleetRenewals.Outcome]>([])
        let service = Task { try await renewals.run { outcome in outcomes.withLock { $0.append(outcome) } } }
        defer { service.cancel() }
        let publisherD = try TelemetryPublisher(target: target, node: d, checkEvery: .milliseconds(200), credential: credentialD, logger: Logger(label: "d")) { Self.report(d) }
        let groupD = ServiceGroup(services: [publisherD], logger: Logger(label: "test"))
        let runningD = Task { try await groupD.run() }
        defer { runningD.cancel() }
        #expect(try await eventually(seconds: 60) { (try? credentialD.certificate().serial) != oldD.serial }, "D was not renewed: \(outcomes.withLock { $0 })")
        let newD = try credentialD.certificate()
        #expect(newD.notAfter.timeIntervalSince(Date()) > 29 * 86400 && newD.publicKeyRaw == oldD.publicKeyRaw && newD.commonName == d, "a fresh 30 days for the same identity")
        #expect(outcomes.withLock { $0.map(\.node) } == [d] && outcomes.withLock { $0[0].refusal } == nil, "\(outcomes.withLock { $0 })")
        let renewedLogin = try await Self.publish(broker, ca: ca + "/ca.crt", certificate: credentialD.certificatePath, key: credentialD.keyPath, topic: "micromirror/nodes/\(d)/probe", message: "renewed")
        #expect(renewedLogin.status == 0, "\(renewedLogin.combined)")
        #expect(try await eventually(seconds: 10) { (try? await Self.retained(broker, "micromirror/nodes/\(d)/probe")) == "renewed" }, "the renewed certificate works")
        #expect(try await eventually(seconds: 30) { (try? await Self.retained(broker, NodeReport.statusTopic(node: d))) == "online" }, "D reports with the renewed certificate")
        // Asking again at once is refused: a certificate is renewed from half its life on, not stocked up.
        #expect(performing: { _ = try authority.renew(node: d, request: try credentialD.request(node: d)) }, throws: { "\($0)".contains("not half through its life") })
        // A request signed by another key for D's name is refused: the identity is pinned.
        let stranger = try Ed25519PrivateKey.generate()
        #expect(throws: BuildError.self) { try authority.renew(node: d, request: try X509Request(commonName: d, key: stranger).pem()) }
        // A request on D's topic naming B is refused.
        let keyD = try Ed25519PrivateKey(pem: Array(FileManager.default.contents(atPath: credentialD.keyPath)!), source: "d")
        #expect(throws: BuildError.self) { try authority.renew(node: d, request: try X509Request(commonName: b, key: keyD).pem()) }
        #expect(throws: BuildError.self) { try authority.renew(node: "../ca", request: try X509Request(commonName: "../ca", key: keyD).pem()) }

        // Revocation: the program writes the CRL and has the broker re-read it; A is refused from then on, B is not.
        let revoked = try await ToolRun.run(SyncCommandTests.binaries + "/mm-image", ["fleet", "revoke", a, "--ca", ca, "--reload", "kill -HUP \(broker.process.processIdentifier)"])
        #expect(revoked.status == 0, "\(revoked.combined)")
        try await Task.sleep(for: .seconds(1))
        let refusedRevoked = try await Self.publish(
            broker, ca: ca + "/ca.crt", certificate: dir + "/a/credential/node.crt", key: dir + "/a/node.key", topic: "micromirror/nodes/\(a)/probe", message: "revoked"
        )
        #expect(refusedRevoked.status != 0, "\(refusedRevoked.combined)")
        let stillB = try await Self.publish(broker, ca: ca + "/ca.crt", certificate: credentialB.certificatePath, key: credentialB.keyPath, topic: "micromirror/nodes/\(b)/probe", message: "still")
        #expect(stillB.status == 0, "\(stillB.combined)")
        // Revoking D revokes every live certificate of it: the one before its renewal too.
        let revokedD = try authority.revoke(node: d)
        #expect(Set(revokedD.map(\.serial)) == [oldD.serial, newD.serial], "\(revokedD)")
        broker.reload()
        try await Task.sleep(for: .seconds(1))
        let refusedOldD = try await Self.publish(broker, ca: ca + "/ca.crt", certificate: dir + "/d/old.crt", key: credentialD.keyPath, topic: "micromirror/nodes/\(d)/probe", message: "old")
        #expect(refusedOldD.status != 0, "the certificate from before the renewal still logs in: \(refusedOldD.combined)")
        // And the revoked node's renewal is refused.
        let keyA = try Ed25519PrivateKey(pem: Array(FileManager.default.contents(atPath: dir + "/a/node.key")!), source: "a")
        #expect(throws: BuildError.self) { try authority.renew(node: a, request: try X509Request(commonName: a, key: keyA).pem()) }

        await group.triggerGracefulShutdown()
        await groupD.triggerGracefulShutdown()
    }

    @Test("the node takes only a longer certificate signed by its fleet CA for its own name and key; anything else leaves its certificate as it was")
    func installChecks() throws {
        let dir = try ToolRun.scratchDirectory("credential-install")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let authority = try FleetAuthority.create(directory: dir + "/ca", brokerNames: ["localhost"])
        let node = "isp-e.mm.fcix.net"
        let credential = try Self.credential(authority, node: node, in: dir + "/e", issued: Date() - 20 * 86400)
        let original = try Array(Data(contentsOf: URL(fileURLWithPath: credential.certificatePath)))
        let key = try Ed25519PrivateKey(pem: Array(FileManager.default.contents(atPath: credential.keyPath)!), source: "e")
        #expect(abs(try credential.renewalDue().timeIntervalSince(Date() - 20 * 86400 + 20 * 86400)) < 120, "due two thirds in")
        // Another CA's certificate for this name and key; one for another name; one for another key.
        let other = try FleetAuthority.create(directory: dir + "/other", brokerNames: ["localhost"])
        let foreign = try other.issue(node: node, key: try key.publicKey())
        let otherName = try authority.issue(node: "isp-f.mm.fcix.net", key: try key.publicKey())
        let otherKey = try authority.issue(node: node, key: try Ed25519PrivateKey.generate().publicKey(), replacingKey: true)
        // A new key for the name revokes the old key's live certificates (a reflashed drive is a new node).
        #expect(try authority.revoked().map(\.serial).contains(try credential.certificate().serial))
        #expect(throws: BuildError.self) { try authority.issue(node: node, key: try key.publicKey()) }
        for (offered, why) in [(foreign, "not signed by the fleet CA"), (otherName, "names isp-f.mm.fcix.net"), (otherKey, "another key")] {
            let error = #expect(throws: NodeCredential.CredentialError.self) { _ = try credential.install(try offered.pem(), node: node) }
            #expect(error.map { "\($0)".contains(why) } == true, "\(String(describing: error))")
            #expect(try Array(Data(contentsOf: URL(fileURLWithPath: credential.certificatePath))) == original)
        }
        // An older one (a predecessor's, retained on the broker): quietly ignored.
        let older = try authority.issue(node: node, key: try key.publicKey(), days: 5, now: Date() - 25 * 86400, replacingKey: true)
        #expect(try credential.install(try older.pem(), node: node) == .current)
        #expect(try Array(Data(contentsOf: URL(fileURLWithPath: credential.certificatePath))) == original)
        // The renewal: taken, on disk.
        let renewed = try authority.issue(node: node, key: try key.publicKey(), replacingKey: true)
        #expect(try credential.install(try renewed.pem(), node: node) == .renewed(notAfter: renewed.notAfter))
        #expect(try credential.certificate().serial == renewed.serial)
        #expect(try credential.install(try renewed.pem(), node: node) == .current)
    }
}
