import ArgumentParser
import Foundation
import Logging
import MicromirrorKit
import NodeRuntimeCore
import ServiceLifecycle
import UnixSignals

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

    static let configuration = CommandConfiguration(
        abstract: "Serve a mirror root over HTTP (standalone: for tests and benchmarks).",
        discussion: """
            Without a node file there is no project list: /metrics labels requests by the top-level \
            directories under the root when the server starts (at most \(ServeConfiguration.maxProjectLabels)); \
            every other path counts as "other". SIGHUP reopens the access log.
            """
    )

    @Option(help: "Mirror root.") var root: String
    @Option(help: "Address to listen on, HOST:PORT or [V6]:PORT (repeatable). Default: [::]:80 (dual stack).") var listen: [String] = []
    @Option(help: "Keep-alive idle timeout in seconds.") var keepalive: Double = 2
    @Option(help: "Seconds a client may take none of a response before it is cut off.") var sendTimeout: Double = 60
    @Option(help: "Connections allowed from one client address.") var maxPerAddress = 16
    @Option(help: "Connections allowed in all.") var maxConnections = 10_000
    @Option(help: "DSCP marking on the server's sockets: cs1 or none.") var dscp = "none"
    @Option(help: "Host name shown in directory listings.") var sponsor = "micromirror"
    @Option(help: "Combined-format access log file.") var accessLog: String?
    @Option(help: "MiB each event loop may use to keep small files in memory (0: off).") var smallFileCache = 16
    @Option(help: "A recipe in cache mode (mode: cache, origin: URL): its project is served from a cache filled from the origin (repeatable).")
    var cacheRecipe: [String] = []
    @Option(help: "Where projects in cache mode keep what they fetched (PROJECT/ each).") var cacheRoot: String?
    @Option(help: "Seconds before the caches' first prefetch round.") var firstPrefetch: Double = 60

    func run() async throws {
        let addresses = try (listen.isEmpty ? ["[::]:80"] : listen).map(Self.parseListen)
        guard let mark = NodeConfig.DSCP(rawValue: dscp) else { throw ValidationError("--dscp: expected cs1 or none") }
        var configuration = ServeConfiguration(root: root, listen: addresses)
        configuration.keepAliveTimeout = .milliseconds(Int64(keepalive * 1000))
        guard sendTimeout > 0 else { throw ValidationError("--send-timeout: expected seconds, more than 0") }
        configuration.sendTimeout = .milliseconds(Int64(sendTimeout * 1000))
        configuration.maxConnectionsPerAddress = maxPerAddress
        configuration.maxConnections = maxConnections
        configuration.tos = mark.tos
        configuration.sponsor = sponsor
        configuration.accessLogPath = accessLog
        guard smallFileCache >= 0 else { throw ValidationError("--small-file-cache: expected MiB, 0 or more") }
        configuration.smallFileCacheBytes = smallFileCache << 20
        for path in cacheRecipe {
            let recipe = try SyncRecipe.load(path: path)
            guard let policy = recipe.cache else { throw ValidationError("--cache-recipe \(path): the recipe is not in cache mode (mode: cache, origin: URL)") }
            configuration.cacheProjects[recipe.project] = policy
        }
        if !cacheRecipe.isEmpty {
            guard let cacheRoot else { throw ValidationError("--cache-recipe needs --cache-root DIR (where the caches keep their files)") }
            configuration.cacheRoot = cacheRoot
        }
        configuration.firstPrefetchAfter = .milliseconds(Int64(firstPrefetch * 1000))
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
