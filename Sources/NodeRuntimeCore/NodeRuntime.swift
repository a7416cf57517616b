import Foundation
import Logging
import MicromirrorKit
import ServiceLifecycle
import SystemKit

/// What `mm-node run` starts on a node, from its node file, and what each service's end means for
/// the others.
///
/// A node runs two processes under different users (least privilege): `--services serve` (the
/// HTTP server, unprivileged but for binding port 80) and `--services sync` (rsync runs and MQTT
/// pushes, as the user that owns the mirror). One process may also run both (development, tests).
///
/// Failure behaviour, so one broken part never takes down the rest:
/// - the server ending (it cannot bind, say) shuts the process down: systemd restarts it;
/// - the sync service ending shuts the process down only when it is the process's main service
///   (`--services sync`); next to a server it is logged and serving goes on;
/// - the push listener ending (a broker that refuses us, bad TLS) is logged and ignored: the
///   interval still syncs, pushes only make it sooner;
/// - a project whose recipe is missing or invalid fails alone: each of its runs reports why (on
///   `/status`, in the journal) while the other projects sync.
public enum NodeRuntime {
    /// The services one `mm-node run` process runs.
    public enum Role: String, CaseIterable, Sendable {
        /// The HTTP server.
        case serve
        /// Syncing from the upstream, and the MQTT push listener when the node file has `mqtt:`.
        case sync
        /// Over-the-air updates (needs root: it writes the inactive slot and the ESP); not a default.
        case update
        /// Reports to the NOC's watchtower over MQTT, when the node file has `telemetry:`.
        case telemetry

        /// What `mm-node run` runs when not told otherwise.
        public static let defaults: [Role] = [.serve, .sync]
    }

    /// The MQTT topic prefix on which the NOC announces releases: `micromirror/update/CHANNEL`.
    public static let updateTopicPrefix = "micromirror/update"

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
        /// Where projects in cache mode keep their files (written by the serve role).
        public var cacheRoot = NodePaths.standard.cache
        public var roles: Set<Role> = Set(Role.defaults)
        /// Where the serve role keeps its traffic history (nil: none).
        public var trafficDirectory: String? = NodePaths.standard.traffic
        /// How often the serve role adds to the traffic history.
        public var trafficInterval: Duration = .seconds(60)
        /// How often the telemetry role republishes the node's report when nothing changed.
        public var telemetryInterval: Duration = .seconds(300)
        /// The node's watchtower credential (`node.crt`, `ca.crt`; none there: no certificate) and
        /// its identity key.
        public var credential = NodePaths.standard.credential
        public var identityKey = NodePaths.standard.nodeKey
        /// How the update role finds the running system (tests point it elsewhere).
        public var update = UpdateEnvironment()
        public init() {}
    }

    /// The serving configuration for a node: its DSCP choice, its name in listings, its projects.
    /// Creates nothing but the access log's directory: the server may run as a user that can only
    /// read the mirror.
    public static func serveConfiguration(_ node: NodeConfig, options: Options) -> ServeConfiguration {
        if let log = options.accessLog {
            // Where it cannot, opening the log says why.
            try? FileManager.default.createDirectory(atPath: (log as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        }
        var configuration = ServeConfiguration(root: options.root, listen: options.listen)
        configuration.tos = node.dscp.tos
        configuration.sponsor = node.hostname
        configuration.accessLogPath = options.accessLog
        configuration.projects = node.projects
        configuration.syncStateDirectory = options.syncState
        configuration.updateStatePath = options.update.paths.updateState
        configuration.trafficHistoryPath = options.trafficDirectory.map { $0 + "/" + TrafficHistory.fileName }
        configuration.cacheProjects = cacheProjects(node, recipes: options.recipes)
        configuration.cacheRoot = options.cacheRoot
        return configuration
    }

    /// The node's projects whose recipes put them in cache mode, with their policies (an origin
    /// the recipe leaves out is the node's upstream host over HTTP).
    public static func cacheProjects(_ node: NodeConfig, recipes directory: String) -> [String: CachePolicy] {
        recipes(for: node.projects, in: directory).recipes.compactMapValues { $0.cachePolicy(upstream: node.upstream) }
    }

    /// The recipe of every project that has a usable one, and for the others why not.
    public static func recipes(for projects: [String], in directory: String) -> (recipes: [String: SyncRecipe], problems: [String: String]) {
        var recipes: [String: SyncRecipe] = [:]
        var problems: [String: String] = [:]
        for project in projects {
            do {
                recipes[project] = try SyncRecipe.load(path: directory + "/" + project + ".yaml")
            } catch {
                problems[project] = "no usable sync recipe: \(error)"
            }
        }
        return (recipes, problems)
    }

    /// The sync service for a node's projects from its upstream. Makes each project's directory.
    /// A project without a usable recipe is still scheduled; its runs fail at once, saying why.
    public static func syncService(_ node: NodeConfig, options: Options, metrics: SyncMetrics? = nil, logger: Logger) throws -> SyncService<ContinuousClock> {
        let fm = FileManager.default
        let (usable, problems) = recipes(for: node.projects, in: options.recipes)
        // Projects in cache mode are the server's to fill: nothing to rsync.
        let cached = Set(usable.filter { $0.value.cache != nil }.keys)
        let recipes = usable.filter { !cached.contains($0.key) }
        let mirrored = node.projects.filter { !cached.contains($0) }
        for project in mirrored {
            try fm.createDirectory(atPath: options.root + "/" + project, withIntermediateDirectories: true)
        }
        for (project, problem) in problems.sorted(by: { $0.key < $1.key }) {
            logger.error("project cannot sync", metadata: ["project": "\(project)", "why": "\(problem)"])
        }
        let upstream = node.upstream
        let root = options.root
        // Each recipe may set its own interval and jitter; the rest take the defaults.
        var policy = SyncSchedule<ContinuousClock.Instant>.Policy()
        for (project, recipe) in recipes where recipe.interval != nil || recipe.jitter != nil {
            policy.timings[project] = .init(interval: recipe.interval ?? policy.interval, jitter: recipe.jitter ?? policy.jitter)
        }
        return SyncService(
            projects: mirrored, policy: policy, clock: ContinuousClock(), stateDirectory: options.syncState,
            metrics: metrics, logger: logger
        ) { project, previous, trigger in
            guard let recipe = recipes[project] else {
                let now = Date()
                return ProjectSync.Report(
                    project: project, upstream: upstream, started: now, finished: now, succeeded: false, failure: problems[project] ?? "no sync recipe"
                )
            }
            var sync = ProjectSync(recipe: recipe, upstream: upstream, root: root, logger: logger)
            if let timeout = recipe.timeout { sync.timeout = timeout }
            sync.previousSucceeded = previous?.succeeded == true
            sync.trigger = trigger
            sync.traceName = node.hostname
            sync.lockDirectory = options.syncState
            return await sync.run()
        }
    }

    /// Every service `options.roles` asks for, each with what its end means for the group.
    public static func services(_ node: NodeConfig, options: Options, logger: Logger) throws -> [ServiceGroupConfiguration.ServiceConfiguration] {
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = []
        let serveMetrics = ServeMetrics()
        if options.roles.contains(.serve) {
            let server = MirrorServer(configuration: serveConfiguration(node, options: options), metrics: serveMetrics, logger: logger)
            services.append(.init(service: server, successTerminationBehavior: .gracefullyShutdownGroup, failureTerminationBehavior: .gracefullyShutdownGroup, serviceName: "serve"))
            if let directory = options.trafficDirectory {
                // A history that cannot be kept costs the graphs, never the serving.
                do {
                    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
                    let history = try TrafficHistory(path: directory + "/" + TrafficHistory.fileName)
                    let recorder = TrafficRecorder(history: history, interval: options.trafficInterval, logger: logger) {
                        TrafficRecorder.totals(metrics: serveMetrics, network: NetworkCounters.read())
                    }
                    services.append(.init(service: recorder, successTerminationBehavior: .ignore, failureTerminationBehavior: .ignore, serviceName: "traffic"))
                } catch {
                    logger.warning("not keeping a traffic history", metadata: ["path": "\(directory)", "error": "\(error)"])
                }
            }
        }
        if options.roles.contains(.sync) {
            let main: ServiceGroupConfiguration.ServiceConfiguration.TerminationBehavior = options.roles.contains(.serve) ? .ignore : .gracefullyShutdownGroup
            let sync = try syncService(node, options: options, metrics: SyncMetrics(sharing: serveMetrics), logger: logger)
            services.append(.init(service: sync, successTerminationBehavior: main, failureTerminationBehavior: main, serviceName: "sync"))
            if let mqtt = node.mqtt {
                do {
                    let listener = try PushListener(
                        broker: mqtt.broker, topicPrefix: mqtt.topicPrefix, clientID: "mm-" + node.hostname, projects: node.projects, logger: logger
                    ) { sync.push($0) }
                    services.append(.init(service: listener, successTerminationBehavior: .ignore, failureTerminationBehavior: .ignore, serviceName: "push"))
                } catch {
                    logger.error("not listening for pushes", metadata: ["why": "\(error)"])
                }
            }
        }
        if options.roles.contains(.telemetry) {
            if let target = node.telemetry {
                let main: ServiceGroupConfiguration.ServiceConfiguration.TerminationBehavior = options.roles.count == 1 ? .gracefullyShutdownGroup : .ignore
                let (root, syncState, updateState) = (options.root, options.syncState, options.update.paths.updateState)
                let credential: NodeCredential?
                do { credential = try NodeCredential.find(directory: options.credential, keyPath: options.identityKey) } catch {
                    logger.error("cannot use the watchtower certificate; reporting without one", metadata: ["why": "\(error)"])
                    credential = nil
                }
                if credential == nil { logger.notice("no watchtower certificate on mm-config; reporting without one", metadata: ["looked-in": "\(options.credential)"]) }
                let limits = NodeReport.limits(recipes: Self.recipes(for: node.projects, in: options.recipes).recipes.filter { $0.value.cache == nil })
                // Projects in cache mode have no sync to report (the server's /status shows their caches).
                let cached = Self.cacheProjects(node, recipes: options.recipes)
                let mirrored = node.projects.filter { cached[$0] == nil }
                let sampler = LoadSampler()
                // A telemetry setup that cannot work must not take the sync down with it.
                do {
                    let publisher = try TelemetryPublisher(
                        target: target, node: node.hostname, interval: options.telemetryInterval, credential: credential, load: { sampler.sample() }, logger: logger
                    ) {
                        NodeReport.gather(
                            node: node, update: FileManager.default.fileExists(atPath: updateState) ? UpdateState.load(path: updateState) : nil,
                            projects: StatusPage.projects(mirrored, stateDirectory: syncState), network: NetworkCounters.read(), dataPath: root, limits: limits
                        )
                    }
                    services.append(.init(service: publisher, successTerminationBehavior: main, failureTerminationBehavior: main, serviceName: "telemetry"))
                } catch {
                    logger.error("not reporting to the watchtower", metadata: ["why": "\(error)"])
                    if options.roles.count == 1 { throw error }
                }
            } else {
                logger.info("no telemetry target in the node file; not reporting to a watchtower")
            }
        }
        if options.roles.contains(.update) {
            let main: ServiceGroupConfiguration.ServiceConfiguration.TerminationBehavior = options.roles.count == 1 ? .gracefullyShutdownGroup : .ignore
            let updater = try options.update.updater(logger: logger)
            let runner = CommandRunner(logger: logger)
            let update = UpdateService(
                updater: updater, channel: ChannelClient(indexURL: node.update.indexURL(upstream: node.upstream), logger: logger), nodeID: options.update.nodeID(),
                interval: node.update.checkInterval, window: node.update.window, clock: ContinuousClock(), logger: logger
            ) {
                try await runner.run(Tool("systemctl", package: "systemd"), ["reboot"])
            }
            services.append(.init(service: update, successTerminationBehavior: main, failureTerminationBehavior: main, serviceName: "update"))
            do {
                if let listener = try Self.announcements(node, logger: logger, onAnnouncement: { update.checkNow() }) {
                    services.append(.init(service: listener, successTerminationBehavior: .ignore, failureTerminationBehavior: .ignore, serviceName: "update-push"))
                }
            } catch {
                logger.error("not listening for release announcements", metadata: ["why": "\(error)"])
            }
        }
        return services
    }

    /// The listener for release announcements on `micromirror/update/CHANNEL` (the channel's name),
    /// on the node's MQTT broker; nil when the node file names no broker.
    public static func announcements(_ node: NodeConfig, logger: Logger, onAnnouncement: @escaping @Sendable () -> Void) throws -> PushListener? {
        guard let mqtt = node.mqtt else { return nil }
        return try PushListener(
            broker: mqtt.broker, topicPrefix: updateTopicPrefix, clientID: "mm-" + node.hostname + "-update", projects: [node.update.channelName], logger: logger
        ) { _ in onAnnouncement() }
    }
}
