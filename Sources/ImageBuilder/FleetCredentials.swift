import ArgumentParser
import Foundation
import ImageBuilderCore
import MicromirrorKit
import SystemKit

/// `mm-image fleet ca`: make the fleet's certificate authority and the broker's configuration.
struct FleetCA: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ca",
        abstract: "Make the fleet's certificate authority (once): the CA, the broker's TLS certificate, an empty CRL, and mosquitto.conf and acl for the watchtower's broker."
    )
    @Option(help: "The directory to make it in (the NOC's; ca.key stays there).") var ca: String
    @Option(help: "A name the nodes dial the broker by, DNS name or IP address, as in the node files' telemetry target (repeat).") var brokerName: [String] = []
    @Option(help: "The port the nodes connect to (TLS, client certificates).") var nodePort = 8883
    @Option(help: "The port on 127.0.0.1 for the NOC's own tools.") var localPort = 1883

    func run() async throws {
        do {
            let authority = try FleetAuthority.create(directory: ca, brokerNames: brokerName, nodePort: nodePort, localPort: localPort)
            print("made the fleet CA in \(authority.directory): the broker's configuration is \(authority.directory)/mosquitto.conf")
            print("nodes dial mqtts://\(brokerName[0]):\(nodePort); the NOC's tools use mqtt://127.0.0.1:\(localPort)")
        } catch { throw fail(error) }
    }
}

/// `mm-image fleet issue NODE`: a node's identity and certificate, onto its drive or into a directory.
struct FleetIssue: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "issue",
        abstract: "Give a node its watchtower credential: a new identity key and a certificate for it, written onto its drive's mm-config (--on) or into a directory (--out)."
    )
    @Option(help: "The fleet CA's directory.") var ca: String
    @Argument(help: "The node's host name (its node file's hostname).") var node: String
    @Option(help: "A flashed drive or disk image to write the credential onto.") var on: String?
    @Option(help: "A directory to write node.key, node.pub, node.crt and ca.crt into instead.") var out: String?
    @Option(help: "Days the certificate is valid; the node renews it itself two thirds in.") var days = FleetAuthority.defaultDays
    @Flag(help: "The node was rebuilt: replace the identity its certificates were pinned to.") var replaceKey = false

    func run() async throws {
        guard (on == nil) != (out == nil) else { throw ValidationError("give one of --on DRIVE and --out DIR") }
        do {
            let authority = try FleetAuthority(directory: ca)
            // Recorded (the key pinned, a replaced key's certificates revoked) once it is in place.
            let (key, certificate) = try authority.issueIdentity(node: node, days: days, replacingKey: replaceKey, record: false)
            if let on {
                try await NodeFileWriter(logger: CLILogging.logger("mm-image.fleet")).placeCredential(key: key, certificate: certificate, authority: authority.certificate, on: on)
                try authority.record(node: node, certificate: certificate)
                print("\(on): \(node)'s identity and certificate (serial \(certificate.serial), valid until \(certificate.notAfter)) on mm-config")
            } else if let out {
                try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
                try AtomicFile.write(try key.pem(), to: out + "/node.key", mode: 0o600)
                try AtomicFile.write(try key.publicKey().pem(), to: out + "/node.pub")
                try AtomicFile.write(try certificate.pem(), to: out + "/node.crt")
                try AtomicFile.write(try authority.certificate.pem(), to: out + "/ca.crt")
                try authority.record(node: node, certificate: certificate)
                print("\(out): \(node)'s identity and certificate (serial \(certificate.serial), valid until \(certificate.notAfter))")
            }
        } catch { throw fail(error) }
    }
}

/// `mm-image fleet revoke NODE`: the broker refuses the node's certificate from its next login.
struct FleetRevoke: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "revoke",
        abstract: "Revoke a node: every live certificate of it goes on the CRL, the broker is told to re-read it, and its renewals are refused."
    )
    @Option(help: "The fleet CA's directory.") var ca: String
    @Argument(help: "The node's host name.") var node: String
    @Option(help: "How to make the broker re-read the CRL (a shell command); empty: do not.") var reload = "systemctl reload mosquitto"

    func run() async throws {
        do {
            let added = try FleetAuthority(directory: ca).revoke(node: node)
            print("revoked \(node)'s live certificates (\(added.isEmpty ? "all were revoked already" : "serials " + added.map { String($0.serial) }.joined(separator: ", "))); the CRL is \(ca)/crl.pem")
            guard !reload.isEmpty else { return print("the broker refuses it once it re-reads the CRL (SIGHUP)") }
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/bin/sh")
            process.arguments = ["-c", reload]
            try process.run()
            process.waitUntilExit()
            guard process.terminationStatus == 0 else {
                throw BuildError(stage: "fleet", "the CRL is written, but \"\(reload)\" exited \(process.terminationStatus): reload the broker (SIGHUP) for it to take effect")
            }
            print("the broker re-read the CRL (\(reload))")
        } catch { throw fail(error) }
    }
}

/// `mm-image fleet renewals`: the NOC's renewal service.
struct FleetRenew: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "renewals",
        abstract: "Answer the nodes' certificate renewal requests, until stopped (a service on the broker's host)."
    )
    @Option(help: "The broker's listener for the NOC's tools.") var broker = "mqtt://127.0.0.1:1883"
    @Option(help: "The fleet CA's directory.") var ca: String
    @Option(help: "Days each renewed certificate is valid.") var days = FleetAuthority.defaultDays

    func run() async throws {
        let renewals: FleetRenewals
        do { renewals = try FleetRenewals(broker: broker, authority: try FleetAuthority(directory: ca), days: days, logger: CLILogging.logger("mm-image.fleet")) } catch { throw fail(error) }
        print("answering renewal requests on \(broker)")
        fflush(nil)
        try await renewals.run { outcome in
            if let notAfter = outcome.notAfter {
                print("\(ISO8601DateFormatter().string(from: Date())) \(outcome.node) renewed: valid until \(ISO8601DateFormatter().string(from: notAfter))")
            } else {
                print("\(ISO8601DateFormatter().string(from: Date())) \(outcome.node) refused: \(outcome.refusal ?? "")")
            }
            fflush(nil)
        }
    }
}
