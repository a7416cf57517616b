/// How the mirror's HTTP server behaves. Defaults follow what the FCIX micro mirrors' nginx does
/// and what the Fedora mirror guide asks (keep-alive 2 s).
public struct ServeConfiguration: Sendable {
    /// The mirror root; every served path resolves inside it.
    public var root: String
    /// `host:port` pairs; `[::]:80` is dual-stack.
    public var listen: [(host: String, port: Int)]
    /// Idle time allowed between requests on a kept-alive connection.
    public var keepAliveTimeout: Duration = .seconds(2)
    /// A request head must arrive completely within this time (slowloris guard).
    public var requestHeadTimeout: Duration = .seconds(10)
    /// While a response is being sent, the client must take some of it within this time or the
    /// connection closes (nginx's `send_timeout`); a stalled client is cut after two to three of these.
    public var sendTimeout: Duration = .seconds(60)
    /// Concurrent connections from one client address (download accelerators open many). IPv4
    /// clients (also IPv4-mapped ones on a dual-stack socket) count by address, IPv6 clients by
    /// their network of `ipv6LimitPrefixLength` bits.
    public var maxConnectionsPerAddress = 16
    /// The IPv6 prefix one client is taken to hold (a /64 per host is common).
    public var ipv6LimitPrefixLength = 64
    /// Concurrent connections in all.
    public var maxConnections = 10_000
    /// Longest request target accepted (414 beyond).
    public var maxURILength = 8192
    /// Largest request head accepted (431 beyond).
    public var maxHeaderBytes = 16 * 1024
    /// TOS / traffic-class byte for every connection (0x20 = DSCP CS1), or nil to leave it alone.
    public var tos: UInt8?
    /// Shown in directory listings ("served by SPONSOR.mm.fcix.net").
    public var sponsor: String = "micromirror"
    /// Combined-format access log file; nil for none. Reopened on SIGHUP (after an outside rotation).
    public var accessLogPath: String?
    /// The access log is rotated when it passes this size (`access.log` → `access.log.1` → ...).
    public var accessLogRotateBytes: Int64 = 64 << 20
    /// Rotated access logs kept (`access.log.1` to `access.log.N`); the oldest goes.
    public var accessLogKeep = 5
    /// How long graceful shutdown lets running transfers continue before closing them.
    public var shutdownGrace: Duration = .seconds(30)
    /// The node's projects and where the sync service keeps their reports, for `/status`.
    ///
    /// They are also the only `project` labels of the request counters; any other first path
    /// component counts as `other`, so random paths cannot grow `/metrics`. Empty (standalone
    /// `mm-node serve`): the top-level directories under the root when the server starts, at most
    /// `maxProjectLabels` of them.
    public var projects: [String] = []
    /// The most project labels taken from the root's directories when `projects` is empty.
    public static let maxProjectLabels = 64
    public var syncStateDirectory: String?
    /// The updater's state (`UpdateState`), for `/status`; nil for none.
    public var updateStatePath: String?
    /// The traffic history (`TrafficHistory`) whose graphs `/status` shows, when the node keeps one.
    public var trafficHistoryPath: String?
    /// Memory each event loop may use to keep small files (up to 64 KiB) with their encoded
    /// fields; 0 turns the cache off. Every use is checked against the file on disk.
    public var smallFileCacheBytes = 16 << 20
    /// Bytes handed to one sendfile write; the next is queued when it completes.
    public var chunkSize = 4 << 20

    /// Projects in cache mode (filled from their origin on demand) and where their caches live
    /// (writable by the server; `PROJECT/` under it is served as `/PROJECT/`).
    public var cacheProjects: [String: CachePolicy] = [:]
    public var cacheRoot: String?
    /// When the first prefetch round of each cache runs (then every `prefetch.every`).
    public var firstPrefetchAfter: Duration = .seconds(60)
    /// Overrides every cache's `prefetch.every` (tests); nil: each recipe's.
    public var prefetchEvery: Duration?

    public init(root: String, listen: [(host: String, port: Int)]) {
        self.root = root
        self.listen = listen
    }
}
