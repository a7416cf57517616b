import ArgumentParser
import Foundation
import MicromirrorKit
import NodeRuntimeCore

/// `mm-node report-mirror`: Fedora's and EPEL's MirrorManager check-in, as the post hook of their
/// recipes (see `MirrorManagerCheckin`). Checks in only after a good run; a node that has no
/// `report_mirror.conf` (not registered with MirrorManager) skips it quietly.
struct ReportMirror: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report-mirror", abstract: "Check in with Fedora's MirrorManager (report_mirror), from its report_mirror.conf."
    )

    /// Where `mm-node-sync.service` puts the NOC's `report_mirror.conf` from mm-config.
    static let defaultConfig = "/run/mm-node-sync/report_mirror.conf"

    @Option(help: "report_mirror.conf (the INI file MirrorManager's admin pages give).") var config = Self.defaultConfig
    @Option(help: "Write what would be sent (JSON) here.") var output: String?
    @Flag(help: "Do not send; with --output, only write.") var noSend = false

    func run() async throws {
        // As a post hook: only a run that left the tree good is worth telling MirrorManager about.
        if let result = ProcessInfo.processInfo.environment["MM_RESULT"], result != "success", result != "skipped" {
            print("report-mirror: not checking in: the run ended \(result)")
            return
        }
        guard let text = try? String(contentsOfFile: config, encoding: .utf8) else {
            print("report-mirror: no \(config): this node is not registered with MirrorManager; not checking in")
            return
        }
        let checkin = try MirrorManagerCheckin.parse(text, file: config)
        if let output {
            let json = try JSONSerialization.data(withJSONObject: checkin.configuration(), options: [.sortedKeys, .prettyPrinted])
            try json.write(to: URL(fileURLWithPath: output))
        }
        guard checkin.enabled else {
            print("report-mirror: [global] enabled is not 1 in \(config); not checking in")
            return
        }
        guard !noSend else { return }
        do {
            let answer = try await checkin.send()
            print("report-mirror: \(checkin.server): \(answer)")
        } catch {
            FileHandle.standardError.write(Data("report-mirror: checking in with \(checkin.server) failed: \(error)\n".utf8))
            throw ExitCode(1)
        }
    }
}
