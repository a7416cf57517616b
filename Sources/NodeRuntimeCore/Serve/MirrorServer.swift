import NIOConcurrencyHelpers
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle

/// The mirror's HTTP/1.1 server on SwiftNIO, as a swift-service-lifecycle service.
///
/// `run()` binds every listen address, reports the bound addresses through `onBound`, serves until
/// graceful shutdown (or cancellation), then stops accepting, lets running transfers finish within
/// `shutdownGrace`, and closes what is left. While it runs, SIGHUP reopens the access log.
public final class MirrorServer: Service, Sendable {
    public let configuration: ServeConfiguration
    public let metrics: ServeMetrics
    private let logger: Logger
    private let group: any EventLoopGroup
    private let onBound: @Sendable ([SocketAddress]) -> Void

    public init(
        configuration: ServeConfiguration, metrics: ServeMetrics = ServeMetrics(), logger: Logger,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton, onBound: @escaping @Sendable ([SocketAddress]) -> Void = { _ in }
    ) {
        self.configuration = configuration
        self.metrics = metrics
        self.logger = logger
        self.group = group
        self.onBound = onBound
    }

    public func run() async throws {
        let resolver = try MirrorFileResolver(root: configuration.root)
        let accessLog = try configuration.accessLogPath.map {
            try AccessLog(path: $0, rotateBytes: self.configuration.accessLogRotateBytes, keep: self.configuration.accessLogKeep)
        }
        let caches = try openCaches()
        let (firstPrefetch, every) = (self.configuration.firstPrefetchAfter, self.configuration.prefetchEvery)
        let prefetching = caches.values.map { cache in Task { await cache.prefetchLoop(firstAfter: firstPrefetch, every: every) } }
        do {
            try await serve(ServeContext(configuration: configuration, resolver: resolver, accessLog: accessLog, metrics: metrics, caches: caches))
        } catch {
            for task in prefetching { task.cancel() }
            for cache in caches.values { await cache.shutdown() }
            throw error
        }
        for task in prefetching { task.cancel() }
        for cache in caches.values { await cache.shutdown() }
        logger.info("stopped serving")
    }

    /// The caches of the projects in cache mode; one that cannot open is left out (logged), so the
    /// others and the mirror are still served.
    private func openCaches() throws -> [String: PullThroughCache] {
        guard !configuration.cacheProjects.isEmpty else { return [:] }
        guard let cacheRoot = configuration.cacheRoot else { throw ServeError("projects in cache mode need a cache directory") }
        var caches: [String: PullThroughCache] = [:]
        for (project, policy) in configuration.cacheProjects.sorted(by: { $0.key < $1.key }) {
            do {
                caches[project] = try PullThroughCache(project: project, policy: policy, cacheRoot: cacheRoot, logger: logger)
            } catch {
                logger.error("project in cache mode not served", metadata: ["project": "\(project)", "why": "\(error)"])
            }
        }
        return caches
    }

    /// Binds, serves until shutdown, lets transfers finish.
    private func serve(_ shared: ServeContext) async throws {
        let hangup: HangupSignal? = if let log = shared.accessLog { await HangupSignal { log.reopen() } } else { nil }
        defer { hangup?.cancel() }
        let limiter = ConnectionLimiter(maxPerAddress: configuration.maxConnectionsPerAddress, maxTotal: configuration.maxConnections)
        let children = ChildChannels()
        let configuration = self.configuration
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .childChannelOption(.maxMessagesPerRead, value: 4)
            .childChannelOption(.recvAllocator, value: AdaptiveRecvByteBufferAllocator(minimum: 64, initial: 512, maximum: 65536))
            .childChannelInitializer { channel in
                children.add(channel)
                do {
                    try Self.markDSCP(channel, tos: configuration.tos)
                    try channel.pipeline.syncOperations.addHandler(MirrorHTTPHandler(context: shared, limiter: limiter, clock: LoopClock.current, eventLoop: channel.eventLoop))
                    return channel.eventLoop.makeSucceededVoidFuture()
                } catch {
                    return channel.eventLoop.makeFailedFuture(error)
                }
            }

        var servers: [any Channel] = []
        do {
            for (host, port) in configuration.listen {
                let server = try await bootstrap.bind(host: host, port: port).get()
                servers.append(server)
                logger.info("serving", metadata: ["address": "\(server.localAddress.map { "\($0)" } ?? "?")", "root": "\(shared.resolver.root)"])
            }
        } catch {
            for server in servers { try? await server.close() }
            throw ServeError("cannot listen on \(configuration.listen.map { "\($0.host):\($0.port)" }.joined(separator: ", ")): \(error)")
        }
        onBound(servers.compactMap(\.localAddress))
        let listening = servers

        await withGracefulShutdownHandler {
            await withTaskCancellationHandler {
                for server in listening { try? await server.closeFuture.get() }
            } onCancel: {
                for server in listening { server.close(promise: nil) }
            }
        } onGracefulShutdown: {
            for server in listening { server.close(promise: nil) }
        }
        // Stopped accepting: let transfers finish within the grace period, then close the rest.
        // Waiting on the channels' close futures, not sleeping: a cancelled task's sleep returns
        // at once, and shutdown must not spin.
        await children.allClosed(within: TimeAmount(configuration.shutdownGrace), on: group.any())
        children.closeAll()
        // Closing is asynchronous: let the closed connections log their last lines, then write them.
        await children.allClosed(within: .seconds(1), on: group.any())
        shared.accessLog?.flush()
    }

    /// DSCP on every accepted socket: IP_TOS for IPv4, IPV6_TCLASS (and IP_TOS, for IPv4-mapped
    /// peers on a dual-stack socket) for IPv6. The byte is DSCP << 2 (CS1 = 0x20).
    static func markDSCP(_ channel: any Channel, tos: UInt8?) throws {
        guard let tos else { return }
        let sync = channel.syncOptions!
        if case .v6 = channel.localAddress {
            try sync.setOption(ChannelOptions.Types.SocketOption(level: SocketOptionLevel(IPPROTO_IPV6), name: SocketOptionName(IPV6_TCLASS)), value: SocketOptionValue(tos))
            try? sync.setOption(ChannelOptions.Types.SocketOption(level: SocketOptionLevel(IPPROTO_IP), name: SocketOptionName(IP_TOS)), value: SocketOptionValue(tos))
        } else {
            try sync.setOption(ChannelOptions.Types.SocketOption(level: SocketOptionLevel(IPPROTO_IP), name: SocketOptionName(IP_TOS)), value: SocketOptionValue(tos))
        }
    }
}
