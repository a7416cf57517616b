import ArgumentParser
import Foundation
import Logging
import MicromirrorKit
import NodeRuntimeCore
import ServiceLifecycle
import UnixSignals

@main
struct MMNode: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mm-node",
        abstract: "The node runtime: serve, sync, report, update. (Telemetry and updates are not built yet.)",
        subcommands: [Run.self, Serve.self, Sync.self, Status.self]
    )
}

struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print the booted slot and image.")

    func run() async throws {
        print(try BootStatus.read(cmdlinePath: "/proc/cmdline", identityPath: "/usr/lib/micromirror/image.json").line)
    }
}

struct Serve: AsyncParsableCommand {
    /// `HOST:PORT` or `[V6]:PORT`.
    static func parseListen(_ text: String) throws -> (host: String, port: Int) {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (0...65535).contains(port) else {
            throw ValidationError("--listen \(text): expected HOST:PORT")
        }
        var host = String(text[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return (host, port)
    }

    static let configuration = CommandConfiguration(abstract: "Serve a mirror root over HTTP (standalone: for tests and benchmarks).")

    @Option(help: "Mirror root.") var root: String
    @Option(help: "Address to listen on, HOST:PORT or [V6]:PORT (repeatable). Default: [::]:80 (dual stack).") var listen: [String] = []
    @Option(help: "Keep-alive idle timeout in seconds.") var keepalive: Double = 2
    @Option(help: "Connections allowed from one client address.") var maxPerAddress = 16
    @Option(help: "Connections allowed in all.") var maxConnections = 10_000
    @Option(help: "DSCP marking on the server's sockets: cs1 or none.") var dscp = "none"
    @Option(help: "Host name shown in directory listings.") var sponsor = "micromirror"
    @Option(help: "Combined-format access log file.") var accessLog: String?
    @Option(help: "MiB each event loop may use to keep small files in memory (0: off).") var smallFileCache = 16

    func run() async throws {
        let addresses = try (listen.isEmpty ? ["[::]:80"] : listen).map(Self.parseListen)
        guard let mark = NodeConfig.DSCP(rawValue: dscp) else { throw ValidationError("--dscp: expected cs1 or none") }
        var configuration = ServeConfiguration(root: root, listen: addresses)
        configuration.keepAliveTimeout = .milliseconds(Int64(keepalive * 1000))
        configuration.maxConnectionsPerAddress = maxPerAddress
        configuration.maxConnections = maxConnections
        configuration.tos = mark.tos
        configuration.sponsor = sponsor
        configuration.accessLogPath = accessLog
        guard smallFileCache >= 0 else { throw ValidationError("--small-file-cache: expected MiB, 0 or more") }
        configuration.smallFileCacheBytes = smallFileCache << 20
        LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }
        let logger = Logger(label: "mm-node.serve")
        let server = MirrorServer(configuration: configuration, logger: logger) { bound in
            // One write, so a test reading our stdout sees the whole line at once.
            let text = bound.map { "listening on \($0)\n" }.joined()
            FileHandle.standardOutput.write(Data(text.utf8))
        }
        let group = ServiceGroup(services: [server], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        try await group.run()
    }
}

struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the node: serve its projects (and, as they are built, sync, report, update).")

    @Option(help: "Node file.") var config = NodeConfig.defaultPath
    @Option(help: "Mirror root.") var root = "/srv/mirror"
    @Option(help: "Address to listen on (repeatable).") var listen: [String] = []
    @Option(help: "Access log.") var accessLog = "/srv/log/access.log"
    @Option(help: "Directory of sync recipes (PROJECT.yaml).") var recipes = "/usr/share/micromirror/recipes"
    @Option(help: "Where each project's last sync report is kept.") var syncState = "/srv/state/sync"
    @Flag(help: "Serve only; do not sync.") var noSync = false

    func run() async throws {
        LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }
        let logger = Logger(label: "mm-node")
        // Like mm-firstboot: a broken node file never half-applies; the last good one keeps the node serving.
        let lastGood = ((config as NSString).deletingLastPathComponent as NSString).appendingPathComponent("node.last-good.yaml")
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

struct Sync: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Sync one project now, from its recipe, and print the report (JSON).")

    @Argument(help: "The project, e.g. almalinux.") var project: String
    @Option(help: "Upstream, rsync://HOST[:PORT]/. Default: the node file's.") var upstream: String?
    @Option(help: "Node file (for the upstream).") var config = NodeConfig.defaultPath
    @Option(help: "Mirror root; the project goes to ROOT/PROJECT.") var root = "/srv/mirror"
    @Option(help: "Directory of sync recipes (PROJECT.yaml).") var recipes = "/usr/share/micromirror/recipes"
    @Option(help: "Stop the run after this many minutes.") var timeoutMinutes = 360

    func run() async throws {
        LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }
        let logger = Logger(label: "mm-node.sync")
        let recipe = try SyncRecipe.load(path: recipes + "/" + project + ".yaml")
        let source = try upstream ?? NodeConfig.load(path: config).upstream
        var sync = ProjectSync(recipe: recipe, upstream: source, root: root, logger: logger)
        sync.timeout = .seconds(timeoutMinutes * 60)
        let report = await sync.run()
        FileHandle.standardOutput.write(try report.json())
        if !report.succeeded { throw ExitCode(1) }
    }
}
