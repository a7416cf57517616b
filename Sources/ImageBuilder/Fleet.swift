import ArgumentParser
import Foundation
import ImageBuilderCore
import MicromirrorKit
import SystemKit

/// `mm-image fleet`: every node that reports to the watchtower's broker, up or down, with what it
/// runs and what is stale; from the retained messages, so it answers at once. Its subcommands make
/// the mirror lists and the Prometheus targets from the same view.
struct Fleet: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "The fleet as the watchtower's MQTT broker sees it: the nodes, their mirror lists, Prometheus' targets; the nodes' credentials (ca, issue, revoke, renewals).",
        subcommands: [FleetShow.self, FleetMirrorlist.self, FleetTargets.self, FleetCA.self, FleetIssue.self, FleetRevoke.self, FleetRenew.self], defaultSubcommand: FleetShow.self
    )
}

/// Where the fleet reports, and when a silent node counts as down.
struct FleetOptions: ParsableArguments {
    @Option(help: "The watchtower's broker, mqtt://HOST[:PORT] or mqtts://HOST[:PORT].") var broker: String
    @Option(help: "User name on the broker (the NOC's).") var username: String?
    @Option(help: "A file holding the broker password for --username.") var passwordFile: String?
    @Option(help: "Call a node down when it has not reported for this many seconds (it reports every 5 minutes).") var downAfter: Double = 900

    func credentials() throws -> (String, String)? {
        guard let username else { return nil }
        guard let passwordFile, let password = try? String(contentsOfFile: passwordFile, encoding: .utf8) else {
            throw ValidationError("--username needs --password-file with the broker password")
        }
        return (username, password.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    /// The fleet now, from the retained messages.
    func view() async throws -> FleetView {
        do { return FleetView(messages: try await FleetView.retained(broker: broker, credentials: try credentials()), downAfter: downAfter) } catch let error as ValidationError { throw error } catch { throw fail(error) }
    }
}

/// `mm-image fleet mirrorlist PROJECT`: the nodes up and fresh for it, in a distribution's format.
struct FleetMirrorlist: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "mirrorlist", abstract: "The nodes that are up and fresh for a project, freshest first, as a mirror list.")
    @OptionGroup var fleet: FleetOptions
    @Argument(help: "The project (its directory on the nodes).") var project: String
    @Option(help: "plain (a URL a line), arch (pacman's Server = lines), metalink (one file, with --file), mirrorz (each node's mirrorz.json).") var format = "plain"
    @Option(help: "For --format metalink: the file's path within the project.") var file: String?

    func run() async throws {
        guard let chosen = FleetMirrorList.Format(rawValue: format) else {
            throw ValidationError("--format: one of \(FleetMirrorList.Format.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        let list = FleetMirrorList(view: try await fleet.view(), project: project)
        do { print(try list.render(chosen, file: file), terminator: "") } catch { throw fail(error) }
        if list.nodes.isEmpty { FileHandle.standardError.write(Data("mm-image: no node is up and fresh for \(project)\n".utf8)) }
    }
}

/// `mm-image fleet targets`: Prometheus' file_sd targets, one per node that is up.
struct FleetTargets: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "targets", abstract: "Write Prometheus' file-based service discovery for the nodes that are up (point a file_sd_configs entry at it)."
    )
    @OptionGroup var fleet: FleetOptions
    @Option(help: "The file to write (replaced whole); - for standard output.") var out = "-"
    @Option(help: "The nodes' HTTP port.") var port = 80

    func run() async throws {
        let text = try FleetScrapeTargets.fileSD(view: try await fleet.view(), port: port)
        if out == "-" { print(text, terminator: "") } else { try AtomicFile.write(text, to: out) }
    }
}

/// `mm-image fleet [show]`: the table, JSON, or a watch with an alert hook.
struct FleetShow: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "show",
        abstract: "List the nodes reporting to the watchtower's MQTT broker: up or down (and why), version and slot, last heard, traffic, stale projects, rollbacks."
    )

    @OptionGroup var fleet: FleetOptions
    @Flag(help: "Print the nodes as JSON.") var json = false
    @Flag(help: "Keep watching: print each change (a node down or up, a project stale or fresh, a rollback) once, as it happens.") var watch = false
    @Option(help: "With --watch: once per change, a program to run with MM_FLEET_EVENT (down, up, stale, fresh, rolled-back), MM_FLEET_NODE, MM_FLEET_SUBJECT (the project or build) and MM_FLEET_DETAIL in its environment, or an http(s):// URL to POST the event to as JSON (event, node, subject, detail, time).")
    var hook: String?
    @Option(help: "With --watch: how often to look, in seconds.") var every: Double = 30

    func run() async throws {
        if watch { return try await watchFleet(credentials: try fleet.credentials()) }
        let view = try await fleet.view()
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
            encoder.dateEncodingStrategy = .iso8601
            print(String(decoding: try encoder.encode(view.nodes), as: UTF8.self))
            return
        }
        guard !view.nodes.isEmpty else {
            print("no node has reported to \(fleet.broker)")
            return
        }
        let formatter = ISO8601DateFormatter()
        var rows: [[String]] = [["node", "sponsor", "state", "version", "slot", "last heard", "sent", "load", "stale", "rolled back"]]
        for node in view.nodes {
            rows.append([
                node.node, node.sponsor, node.up ? "up" : "DOWN", node.version.map { "\($0) (\(node.build ?? 0))" } ?? "-",
                (node.slot ?? "-") + (node.blessed == false ? " (trial)" : ""), formatter.string(from: node.lastHeard), ByteSize.format(node.sentBytes),
                node.load.map(\.summary) ?? "-",
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
            feed = try FleetFeed(broker: fleet.broker, credentials: credentials)
            try await feed.open()
        } catch { throw fail(error) }
        defer { feed.close() }
        var last = FleetView(messages: feed.messages, downAfter: fleet.downAfter)
        print("watching \(last.nodes.count) nodes on \(fleet.broker): \(last.nodes.filter(\.up).count) up, \(last.nodes.filter { !$0.up }.count) down")
        for node in last.nodes where !node.up { print("\(node.node): down: \(node.why ?? "")") }
        fflush(nil)
        let formatter = ISO8601DateFormatter()
        while true {
            try await Task.sleep(for: .seconds(every))
            let now = FleetView(messages: feed.messages, downAfter: fleet.downAfter)
            for event in now.events(since: last) {
                print("\(formatter.string(from: Date())) \(event.node) \(event.kind.rawValue)\(event.subject.map { " " + $0 } ?? ""): \(event.detail)")
                fflush(nil)
                if let hook {
                    if FleetWebhook.isWebhook(hook) { await post(hook, event) } else { run(hook, for: event) }
                }
            }
            last = now
        }
    }

    /// POSTs one event to the webhook; a failure is reported, not retried.
    func post(_ url: String, _ event: FleetEvent) async {
        do { try await FleetWebhook(url: url).post(event) } catch {
            FileHandle.standardError.write(Data("mm-image: the webhook \(url) failed for \(event.node) \(event.kind.rawValue): \(error)\n".utf8))
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
