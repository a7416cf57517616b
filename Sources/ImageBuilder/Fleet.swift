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
    @Flag(help: "Keep watching: print each change (a node down or up, a project stale or fresh, a rollback) once, as it happens.") var watch = false
    @Option(help: "With --watch: a program to run once per change, with MM_FLEET_EVENT (down, up, stale, fresh, rolled-back), MM_FLEET_NODE, MM_FLEET_SUBJECT (the project or build) and MM_FLEET_DETAIL in its environment (a webhook: a script that runs curl).")
    var hook: String?
    @Option(help: "With --watch: how often to look, in seconds.") var every: Double = 30

    func run() async throws {
        var credentials: (String, String)?
        if let username {
            guard let passwordFile, let password = try? String(contentsOfFile: passwordFile, encoding: .utf8) else {
                throw ValidationError("--username needs --password-file with the broker password")
            }
            credentials = (username, password.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        if watch { return try await watchFleet(credentials: credentials) }
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

    /// `--watch`: the fleet as it is, then each change once, until stopped.
    func watchFleet(credentials: (String, String)?) async throws {
        let feed: FleetFeed
        do {
            feed = try FleetFeed(broker: broker, credentials: credentials)
            try await feed.open()
        } catch { throw fail(error) }
        defer { feed.close() }
        var last = FleetView(messages: feed.messages, downAfter: downAfter)
        print("watching \(last.nodes.count) nodes on \(broker): \(last.nodes.filter(\.up).count) up, \(last.nodes.filter { !$0.up }.count) down")
        for node in last.nodes where !node.up { print("\(node.node): down: \(node.why ?? "")") }
        fflush(nil)
        let formatter = ISO8601DateFormatter()
        while true {
            try await Task.sleep(for: .seconds(every))
            let now = FleetView(messages: feed.messages, downAfter: downAfter)
            for event in now.events(since: last) {
                print("\(formatter.string(from: Date())) \(event.node) \(event.kind.rawValue)\(event.subject.map { " " + $0 } ?? ""): \(event.detail)")
                fflush(nil)
                if let hook { run(hook, for: event) }
            }
            last = now
        }
    }

    /// Runs the hook for one event and waits for it; a failing hook is reported, not retried.
    func run(_ hook: String, for event: FleetEvent) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: hook)
        var environment = ProcessInfo.processInfo.environment
        environment["MM_FLEET_EVENT"] = event.kind.rawValue
        environment["MM_FLEET_NODE"] = event.node
        environment["MM_FLEET_SUBJECT"] = event.subject ?? ""
        environment["MM_FLEET_DETAIL"] = event.detail
        process.environment = environment
        do {
            try process.run()
            process.waitUntilExit()
            if process.terminationStatus != 0 {
                FileHandle.standardError.write(Data("mm-image: the hook \(hook) exited \(process.terminationStatus) for \(event.node) \(event.kind.rawValue)\n".utf8))
            }
        } catch {
            FileHandle.standardError.write(Data("mm-image: cannot run the hook \(hook): \(error)\n".utf8))
        }
    }
}
