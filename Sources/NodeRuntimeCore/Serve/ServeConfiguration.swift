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
    /// Concurrent connections from one client address (download accelerators open many).
    public var maxConnectionsPerAddress = 16
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
    /// Combined-format access log file; nil for none.
    public var accessLogPath: String?
    /// How long graceful shutdown lets running transfers continue before closing them.
    public var shutdownGrace: Duration = .seconds(30)
    /// The node's projects and where the sync service keeps their reports, for `/status`.
    public var projects: [String] = []
    public var syncStateDirectory: String?
    /// Memory each event loop may use to keep small files (up to 64 KiB) with their encoded
    /// fields; 0 turns the cache off. Every use is checked against the file on disk.
    public var smallFileCacheBytes = 16 << 20
    /// Bytes handed to one sendfile write; the next is queued when it completes.
    public var chunkSize = 4 << 20

    public init(root: String, listen: [(host: String, port: Int)]) {
        self.root = root
        self.listen = listen
    }
}
