import ArgumentParser
import Foundation
import Logging
import MicromirrorKit
import NodeRuntimeCore
import ServiceLifecycle
import SystemKit
import UnixSignals

struct Sync: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Sync one project now, from its recipe, and print the report (JSON).")

    @Argument(help: "The project, e.g. almalinux.") var project: String
    @Option(help: "Upstream, rsync://HOST[:PORT]/. Default: the node file's.") var upstream: String?
    @Option(help: "Node file (for the upstream).") var config = NodeConfig.defaultPath
    @Option(help: "Mirror root; the project goes to ROOT/PROJECT.") var root = NodePaths.standard.mirror
    @Option(help: "Directory of sync recipes (PROJECT.yaml).") var recipes = NodePaths.recipes
    @Option(help: "Stop the run after this many minutes. Default: the recipe's timeout, or 360.") var timeoutMinutes: Int?
    @Option(help: "Sync state directory, where the project's lock is (the same one mm-node run uses).")
    var syncState = NodePaths.standard.syncState
    @Flag(help: "Let this one run delete more than the recipe's max-delete (after the deletion guard refused a run and you checked the upstream).")
    var allowDeletions = false
    @Option(help: "Bytes to keep free on the mirror's filesystem beyond what the run copies, e.g. 1GiB. Default: 1 GiB, at most 5 % of the filesystem.") var reserve: String?

    func run() async throws {
        LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }
        let logger = Logger(label: "mm-node.sync")
        let recipe = try SyncRecipe.load(path: recipes + "/" + project + ".yaml")
        if recipe.cache != nil {
            throw ValidationError("\(project) is in cache mode (its recipe says mode: cache): the server fills it from its origin on demand; there is nothing to rsync")
        }
        let source = try upstream ?? NodeConfig.load(path: config).upstream
        var sync = ProjectSync(recipe: recipe, upstream: source, root: root, logger: logger)
        if let timeoutMinutes { sync.timeout = .seconds(timeoutMinutes * 60) } else if let timeout = recipe.timeout { sync.timeout = timeout }
        sync.lockDirectory = syncState
        sync.allowDeletions = allowDeletions
        // The node's own trace file is named after it, as in mm-node run.
        sync.traceName = try? NodeConfig.load(path: config).hostname
        if let reserve {
            guard let reserveBytes = ByteSize.parse(reserve) else { throw ValidationError("--reserve \(reserve): expected a size like 512MiB or 2GiB") }
            sync.reserve = reserveBytes
        }
        // SIGTERM or SIGINT stops rsync (SIGTERM, then SIGKILL) before this process ends, as in
        // mm-node run: a sync by hand never leaves an orphan writing into the tree.
        let work = Task { await sync.run() }
        let signals = Task {
            for await signal in await UnixSignalsSequence(trapping: .sigterm, .sigint) {
                logger.notice("stopping the sync", metadata: ["signal": "\(signal)"])
                work.cancel()
                break
            }
        }
        let report = await work.value
        signals.cancel()
        // Kept as the project's state and in the history, as a run of the service keeps it (/status
        // shows it); not when another run held the project, whose own report is the one that counts.
        if report.refused != .busy {
            do {
                try FileManager.default.createDirectory(atPath: syncState, withIntermediateDirectories: true)
                try AtomicFile.write(Array(report.json()), to: syncState + "/" + project + ".json")
                try SyncHistory.open(stateDirectory: syncState).record(report, freshness: report.freshness)
            } catch {
                logger.error("cannot keep the report as the project's state", metadata: ["error": "\(error)"])
            }
        }
        FileHandle.standardOutput.write(try report.json())
        if !report.succeeded { throw ExitCode(1) }
    }
}
