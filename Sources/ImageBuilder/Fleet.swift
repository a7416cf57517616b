import ArgumentParser
import Foundation
import ImageBuilderCore
import MicromirrorKit

/// `mm-image fleet`: every node that reports to the watchtower's broker, up or down, with what it
/// runs and what is stale; from the retained messages, so it answers at once.
struct Fleet: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List the nodes reporting to the watchtower's MQTT broker: up or down (and why), version and slot, last heard, traffic, stale projects, rollbacks."
    )

    @Option(help: "The watchtower's broker, mqtt://HOST[:PORT] or mqtts://HOST[:PORT].") var broker: String
    @Option(help: "User name on the broker (the NOC's).") var username: String?
    @Option(help: "A file holding the broker password for --username.") var passwordFile: String?
    @Option(help: "Call a node down when it has not reported for this many seconds (it reports every 5 minutes).") var downAfter: Double = 900
    @Flag(help: "Print the nodes as JSON.") var json = false

    func run() async throws {
        var credentials: (String, String)?
        if let username {
            guard let passwordFile, let password = try? String(contentsOfFile: passwordFile, encoding: .utf8) else {
                throw ValidationError("--username needs --password-file with the broker password")
            }
            credentials = (username, password.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        let messages: [String: [UInt8]]
        do { messages = try await FleetView.retained(broker: broker, credentials: credentials) } catch { throw fail(error) }
        let view = FleetView(messages: messages, downAfter: downAfter)
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
            encoder.dateEncodingStrategy = .iso8601
            print(String(decoding: try encoder.encode(view.nodes), as: UTF8.self))
            return
        }
        guard !view.nodes.isEmpty else {
            print("no node has reported to \(broker)")
            return
        }
        let formatter = ISO8601DateFormatter()
        var rows: [[String]] = [["node", "sponsor", "state", "version", "slot", "last heard", "sent", "stale", "rolled back"]]
        for node in view.nodes {
            rows.append([
                node.node, node.sponsor, node.up ? "up" : "DOWN", node.version.map { "\($0) (\(node.build ?? 0))" } ?? "-",
                (node.slot ?? "-") + (node.blessed == false ? " (trial)" : ""), formatter.string(from: node.lastHeard), ByteSize.format(node.sentBytes),
                node.staleProjects.isEmpty ? "-" : node.staleProjects.joined(separator: ","), node.rolledBack.isEmpty ? "-" : node.rolledBack.map(String.init).joined(separator: ","),
            ])
        }
        let widths = (0..<rows[0].count).map { column in rows.map { $0[column].count }.max() ?? 0 }
        for row in rows {
            print(zip(row, widths).map { $0.padding(toLength: $1, withPad: " ", startingAt: 0) }.joined(separator: "  ").trimmingCharacters(in: .whitespaces))
        }
        for node in view.nodes where !node.up { print("\(node.node): down: \(node.why ?? "")") }
    }
}
