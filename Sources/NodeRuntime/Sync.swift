import ArgumentParser
import Foundation
import Logging
import MicromirrorKit
import NodeRuntimeCore
import ServiceLifecycle
import UnixSignals

struct Sync: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Sync one project now, from its recipe, and print the report (JSON).")

    @Argument(help: "The project, e.g. almalinux.") var project: String
    @Option(help: "Upstream, rsync://HOST[:PORT]/. Default: the node file's.") var upstream: String?
    @Option(help: "Node file (for the upstream).") var config = NodeConfig.defaultPath
    @Option(help: "Mirror root; the project goes to ROOT/PROJECT.") var root = NodePaths.standard.mirror
    @Option(help: "Directory of sync recipes (PROJECT.yaml).") var recipes = NodePaths.recipes
    @Option(help: "Stop the run after this many minutes.") var timeoutMinutes = 360
    @Option(help: "Sync state directory, where the project's lock is (the same one mm-node run uses).")
    var syncState = NodePaths.standard.syncState

    func run() async throws {
        LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }
        let logger = Logger(label: "mm-node.sync")
        let recipe = try SyncRecipe.load(path: recipes + "/" + project + ".yaml")
        let source = try upstream ?? NodeConfig.load(path: config).upstream
        var sync = ProjectSync(recipe: recipe, upstream: source, root: root, logger: logger)
        sync.timeout = .seconds(timeoutMinutes * 60)
        sync.lockDirectory = syncState
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
        FileHandle.standardOutput.write(try report.json())
        if !report.succeeded { throw ExitCode(1) }
    }
}
