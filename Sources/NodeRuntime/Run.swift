import ArgumentParser
import Foundation
import Logging
import MicromirrorKit
import NodeRuntimeCore
import ServiceLifecycle
import UnixSignals

struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the node: serve its projects (and, as they are built, sync, report, update).")

    @Option(help: "Node file.") var config = NodeConfig.defaultPath
    @Option(help: "Mirror root.") var root = NodePaths.standard.mirror
    @Option(help: "Address to listen on (repeatable).") var listen: [String] = []
    @Option(help: "Access log.") var accessLog = NodePaths.standard.accessLog
    @Option(help: "Directory of sync recipes (PROJECT.yaml).") var recipes = NodePaths.recipes
    @Option(help: "Where each project's last sync report is kept.") var syncState = NodePaths.standard.syncState
    @Flag(help: "Serve only; do not sync.") var noSync = false

    func run() async throws {
        LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }
        let logger = Logger(label: "mm-node")
        // Like mm-firstboot: a broken node file never half-applies; the last good one keeps the node serving.
        let lastGood = NodePaths.lastGood(besides: config)
        let node: NodeConfig
        do {
            node = try NodeConfig.load(path: config)
        } catch {
            guard let previous = try? NodeConfig.load(path: lastGood) else {
                logger.critical("the node file is invalid and there is no last good one; not serving", metadata: ["problems": "\(error)"])
                throw ExitCode(1)
            }
            logger.error("the node file is invalid; serving with the last good one", metadata: ["problems": "\(error)", "using": "\(lastGood)"])
            node = previous
        }
        var options = NodeRuntime.Options()
        options.config = config
        options.root = root
        options.accessLog = accessLog
        if !listen.isEmpty { options.listen = try listen.map(Serve.parseListen) }
        options.recipes = recipes
        options.syncState = syncState
        let serveMetrics = ServeMetrics()
        let server = MirrorServer(configuration: try NodeRuntime.serveConfiguration(node, options: options), metrics: serveMetrics, logger: logger)
        var services: [any Service] = [server]
        if !noSync {
            do {
                let sync = try NodeRuntime.syncService(node, options: options, metrics: SyncMetrics(sharing: serveMetrics), logger: logger)
                services.append(sync)
                if let mqtt = node.mqtt {
                    do {
                        services.append(
                            try PushListener(
                                broker: mqtt.broker, topicPrefix: mqtt.topicPrefix, clientID: "mm-" + node.hostname, projects: node.projects,
                                logger: logger
                            ) { sync.push($0) }
                        )
                    } catch {
                        // The interval still syncs; pushes only make it sooner.
                        logger.error("not listening for pushes", metadata: ["why": "\(error)"])
                    }
                }
            } catch {
                // Serving what is already on disk beats serving nothing: keep the server up.
                logger.error("not syncing", metadata: ["why": "\(error)"])
            }
        }
        let group = ServiceGroup(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        try await group.run()
    }
}
