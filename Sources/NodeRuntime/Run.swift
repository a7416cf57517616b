import ArgumentParser
import Foundation
import Logging
import MicromirrorKit
import NodeRuntimeCore
import ServiceLifecycle
import SystemKit
import UnixSignals

struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the node: serve its projects and keep them in sync (each part can run in its own process, as its own user)."
    )

    @Option(help: "Node file.") var config = NodeConfig.defaultPath
    @Option(help: "Mirror root.") var root = NodePaths.standard.mirror
    @Option(help: "Address to listen on (repeatable).") var listen: [String] = []
    @Option(help: "Access log.") var accessLog = NodePaths.standard.accessLog
    @Option(help: "Directory of sync recipes (PROJECT.yaml).") var recipes = NodePaths.recipes
    @Option(help: "Where each project's last sync report is kept.") var syncState = NodePaths.standard.syncState
    @Option(help: "Where projects in cache mode keep what they fetched (written by the serve service).") var cacheRoot = NodePaths.standard.cache
    @Option(help: "The watchtower credential's directory (node.crt, ca.crt from the NOC's fleet CA; renewed here).") var credential = NodePaths.standard.credential
    @Option(help: "The node's identity key, which the watchtower certificate is for.") var identityKey = NodePaths.standard.nodeKey
    @Option(help: "Where the server keeps its traffic history for /status's graphs; 'none' for none.") var trafficHistory = NodePaths.standard.traffic
    @Option(help: "Seconds between the traffic history's samples.") var trafficInterval: Int = 60
    @Option(help: "What this process runs, comma-separated: serve, sync (with MQTT pushes), update (as root). Default: serve,sync.")
    var services = NodeRuntime.Role.defaults.map(\.rawValue).joined(separator: ",")
    @Option(help: "Refuse to start unless a filesystem is mounted here (mm-data), so nothing fills the RAM-backed root; 'none' to skip.")
    var requireMount = NodePaths.standard.data

    /// The roles named by `--services`.
    static func roles(_ text: String) throws -> Set<NodeRuntime.Role> {
        var roles: Set<NodeRuntime.Role> = []
        for name in text.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) {
            guard let role = NodeRuntime.Role(rawValue: name) else {
                throw ValidationError("--services: unknown service '\(name)'; expected a comma-separated list of \(NodeRuntime.Role.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            roles.insert(role)
        }
        guard !roles.isEmpty else { throw ValidationError("--services: name at least one of \(NodeRuntime.Role.allCases.map(\.rawValue).joined(separator: ", "))") }
        return roles
    }

    func validate() throws {
        _ = try Self.roles(services)
        _ = try listen.map(Serve.parseListen)
    }

    func run() async throws {
        LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }
        let logger = Logger(label: "mm-node")
        if requireMount != "none", !MountTable.current().isMountPoint(requireMount) {
            logger.critical("the data partition is not mounted; refusing to write the mirror into memory", metadata: ["path": "\(requireMount)"])
            throw ExitCode(1)
        }
        // Like mm-firstboot: a broken node file never half-applies; the last good one keeps the node serving.
        let node: NodeConfig
        do {
            let (loaded, problems) = try NodeConfig.loadOrLastGood(path: config)
            if let problems {
                logger.error("the node file is invalid; running with the last good one", metadata: ["problems": "\(problems)", "using": "\(NodePaths.lastGood(besides: config))"])
            }
            node = loaded
        } catch {
            logger.critical("the node file is invalid and there is no last good one; not starting", metadata: ["problems": "\(error)"])
            throw ExitCode(1)
        }
        var options = NodeRuntime.Options()
        options.config = config
        options.root = root
        options.accessLog = accessLog
        if !listen.isEmpty { options.listen = try listen.map(Serve.parseListen) }
        options.recipes = recipes
        options.syncState = syncState
        options.cacheRoot = cacheRoot
        options.trafficDirectory = trafficHistory == "none" ? nil : trafficHistory
        options.credential = credential
        options.identityKey = identityKey
        options.trafficInterval = .seconds(max(1, trafficInterval))
        options.roles = try Self.roles(services)
        let configuration = ServiceGroupConfiguration(
            services: try NodeRuntime.services(node, options: options, logger: logger), gracefulShutdownSignals: [.sigterm, .sigint], logger: logger
        )
        try await ServiceGroup(configuration: configuration).run()
    }
}
