import ArgumentParser
import Foundation
import MicromirrorKit
import NodeRuntimeCore
import SystemKit

/// `mm-node rsyncd-config`: the rsync daemon's configuration from the node file (`mm-rsyncd.service`
/// runs it before the daemon starts, so the modules always match the node's projects).
struct RsyncdConfigCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rsyncd-config", abstract: "Write the rsync daemon's configuration for downstream mirrors: a read-only module per project of the node file."
    )

    @Option(help: "Node file.") var config = NodeConfig.defaultPath
    @Option(help: "Mirror root; a project's module serves ROOT/PROJECT.") var root = NodePaths.standard.mirror
    @Option(help: "Directory of sync recipes: projects in cache mode get no module (they are not whole).") var recipes = NodePaths.recipes
    @Option(help: "Write here (atomically) instead of standard output.") var output: String?
    @Option(help: "Connections per module at once.") var maxConnections = 10
    @Option(help: "rsync's lock file for max connections.") var lockFile = "/run/mm-rsyncd/rsyncd.lock"

    func validate() throws {
        guard maxConnections >= 1 else { throw ValidationError("--max-connections must be at least 1") }
    }

    func run() async throws {
        // A node file that does not load is never half-applied: the last good one is used, as
        // mm-node run does; without one the daemon does not start.
        let (node, problems) = try NodeConfig.loadOrLastGood(path: config)
        if let problems {
            FileHandle.standardError.write(Data("mm-node rsyncd-config: \(config) is invalid; using the last good node file\n\(problems)\n".utf8))
        }
        let cached = NodeRuntime.cacheProjects(node, recipes: recipes)
        var rsyncd = RsyncdConfig(projects: node.projects.filter { cached[$0] == nil }, root: root, node: node.hostname)
        rsyncd.maxConnections = maxConnections
        rsyncd.lockFile = lockFile
        let text = rsyncd.render()
        if let output { try AtomicFile.write(text, to: output) } else { print(text, terminator: "") }
    }
}
