import Foundation
import Logging
import MicromirrorKit

/// What `mm-node run` starts on a node, from its node file: the mirror's HTTP server and the sync
/// service. MQTT, telemetry and updates join this list as they are built.
public enum NodeRuntime {
    public struct Options: Sendable {
        public var config = NodeConfig.defaultPath
        /// Where the mirrored projects live (on the data partition).
        public var root = NodePaths.standard.mirror
        public var listen: [(host: String, port: Int)] = [("::", 80)]
        public var accessLog: String? = NodePaths.standard.accessLog
        /// One recipe per project, `PROJECT.yaml`.
        public var recipes = NodePaths.recipes
        /// Where each project's last sync report is kept (`PROJECT.json`), on the data partition.
        public var syncState = NodePaths.standard.syncState
        public init() {}
    }

    /// The serving configuration for a node: its DSCP choice, its name in listings, a directory per project.
    public static func serveConfiguration(_ node: NodeConfig, options: Options) throws -> ServeConfiguration {
        let fm = FileManager.default
        for project in node.projects {
            try fm.createDirectory(atPath: options.root + "/" + project, withIntermediateDirectories: true)
        }
        if let log = options.accessLog {
            try fm.createDirectory(atPath: (log as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        }
        var configuration = ServeConfiguration(root: options.root, listen: options.listen)
        configuration.tos = node.dscp.tos
        configuration.sponsor = node.hostname
        configuration.accessLogPath = options.accessLog
        configuration.projects = node.projects
        configuration.syncStateDirectory = options.syncState
        return configuration
    }

    /// The sync service for a node's projects from its upstream. Every project needs a recipe;
    /// all missing or invalid ones are reported together.
    public static func syncService(_ node: NodeConfig, options: Options, metrics: SyncMetrics? = nil, logger: Logger) throws -> SyncService<ContinuousClock> {
        var recipes: [String: SyncRecipe] = [:]
        var problems: [String] = []
        for project in node.projects {
            let path = options.recipes + "/" + project + ".yaml"
            do {
                recipes[project] = try SyncRecipe.load(path: path)
            } catch {
                problems.append("\(error)")
            }
        }
        guard problems.isEmpty else {
            throw SyncSetupError("cannot sync every project of this node:\n" + problems.joined(separator: "\n"))
        }
        let upstream = node.upstream
        let root = options.root
        let loaded = recipes
        return SyncService(
            projects: node.projects, policy: SyncSchedule<ContinuousClock.Instant>.Policy(), clock: ContinuousClock(), stateDirectory: options.syncState,
            metrics: metrics, logger: logger
        ) { project, previous in
            var sync = ProjectSync(recipe: loaded[project]!, upstream: upstream, root: root, logger: logger)
            sync.previousSucceeded = previous?.succeeded == true
            return await sync.run()
        }
    }
}

/// The sync service cannot start, and why.
public struct SyncSetupError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
