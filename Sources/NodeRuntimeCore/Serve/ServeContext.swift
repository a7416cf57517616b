import Foundation
import NIOCore
import NIOPosix

/// Everything a connection's handler shares with the server (one object, so a connection holds a
/// reference rather than its own copy of the configuration).
public final class ServeContext: Sendable {
    public let configuration: ServeConfiguration
    public let resolver: MirrorFileResolver
    public let accessLog: AccessLog?
    public let metrics: ServeMetrics
    /// The parser's limits, from the configuration.
    let limits: HTTPRequestParser.Limits
    /// The configuration's deadlines as event-loop time, made once rather than per request.
    let timeouts: ConnectionStateMachine.Timeouts
    /// The `project` labels the counters use; every other first path component is `other`.
    let projectLabels: Set<String>
    /// Where blocking work goes (listings, `/status`), off the event loops.
    let threadPool: NIOThreadPool
    /// The projects in cache mode, by name.
    public let caches: [String: PullThroughCache]

    /// `threadPool` must be running.
    public init(
        configuration: ServeConfiguration, resolver: MirrorFileResolver, accessLog: AccessLog?, metrics: ServeMetrics,
        threadPool: NIOThreadPool = .singleton, caches: [String: PullThroughCache] = [:]
    ) {
        self.caches = caches
        self.configuration = configuration
        self.resolver = resolver
        self.accessLog = accessLog
        self.metrics = metrics
        self.threadPool = threadPool
        self.limits = HTTPRequestParser.Limits(maxTargetLength: configuration.maxURILength, maxHeadBytes: configuration.maxHeaderBytes, maxFields: 100)
        self.timeouts = .init(
            keepAlive: TimeAmount(configuration.keepAliveTimeout), head: TimeAmount(configuration.requestHeadTimeout),
            send: TimeAmount(configuration.sendTimeout)
        )
        if !configuration.projects.isEmpty || !caches.isEmpty {
            projectLabels = Set(configuration.projects).union(caches.keys)
        } else {
            // Standalone: the projects are the top-level directories there are now (bounded).
            let directories = ((try? DirectoryListing.entries(of: ".", resolver: resolver)) ?? []).filter { $0.type == "directory" }
            projectLabels = Set(directories.prefix(ServeConfiguration.maxProjectLabels).map(\.name))
        }
    }

    /// The counters' label for a request's first path component.
    func projectLabel(_ component: String?) -> String {
        guard let component, projectLabels.contains(component) else { return "other" }
        return component
    }

    /// This server's small-file caches, one per event-loop thread.
    private let smallFileCaches = ThreadSpecificVariable<SmallFileCache>()

    /// The calling thread's small-file cache for this server; only that thread may use it.
    func smallFileCache(tally: ServeMetrics.Tally) -> SmallFileCache {
        smallFileCaches.value { SmallFileCache(budget: configuration.smallFileCacheBytes, tally: tally) }
    }
}
