/// Where a node keeps everything: the one statement of the boot → runtime contract that
/// `mm-image` (what it lays into the image), `mm-firstboot` (what it writes at boot) and `mm-node`
/// (what it reads and serves) share. Nothing else spells these paths.
///
/// Two roots: `config`, the mounted `mm-config` partition (small, survives updates: node file,
/// identity), and `data`, the mounted `mm-data` partition (the mirror, state, logs). Files that come
/// with the read-only image are static.
public struct NodePaths: Sendable, Equatable {
    /// Where `mm-config` is mounted.
    public var config: String
    /// Where `mm-data` is mounted.
    public var data: String

    public init(config: String = "/var/lib/mm-config", data: String = "/srv") {
        self.config = config
        self.data = data
    }

    /// The paths of a real node.
    public static let standard = NodePaths()

    // MARK: - mm-config

    /// The node file `mm-image node write` puts there.
    public var nodeFile: String { config + "/node.yaml" }
    /// The last node file that validated and applied; used while the current one is invalid.
    public var lastGoodNodeFile: String { config + "/node.last-good.yaml" }
    /// SSH host key, node key and machine id, created on the first boot.
    public var identity: String { config + "/identity" }
    public var machineID: String { identity + "/machine-id" }
    /// The node's Ed25519 identity key (made on the first boot, or by the NOC when it flashed the
    /// node with a fleet CA); the watchtower certificate is for it.
    public var nodeKey: String { identity + "/node.key" }
    /// The node's watchtower credential: `node.crt` (its certificate from the NOC's fleet CA, which
    /// the node renews itself) and `ca.crt` (the fleet CA). Owned by the service that reports.
    public var credential: String { config + "/credential" }
    /// Written once the first boot laid out the disk.
    public var firstbootStamp: String { config + "/firstboot.done" }

    /// The last good node file for a node file at `path` (a sibling, as on mm-config).
    public static func lastGood(besides path: String) -> String {
        let directory = path.lastIndex(of: "/").map { String(path[..<$0]) } ?? "."
        return (directory.isEmpty ? "" : directory) + "/node.last-good.yaml"
    }

    // MARK: - mm-data

    /// The mirrored projects, one directory each; the HTTP server's root.
    public var mirror: String { data + "/mirror" }
    /// The caches of projects in cache mode (`PROJECT/` each), written by the server.
    public var cache: String { data + "/cache" }
    /// Durable state of the node's services.
    public var state: String { data + "/state" }
    /// Each project's last sync report (`PROJECT.json`).
    public var syncState: String { state + "/sync" }
    /// Logs that outlive a boot.
    public var logs: String { data + "/log" }
    public var accessLog: String { logs + "/access.log" }
    /// The persistent journal (bounded), so a failed boot's logs are there after the reboot.
    public var journal: String { logs + "/journal" }
    /// The updater's state (`UpdateState`) and its downloads.
    public var updateState: String { state + "/update.json" }
    /// Where the server keeps its traffic history (bytes per project and interface over time).
    public var traffic: String { state + "/traffic" }
    public var updateStaging: String { state + "/update" }

    // MARK: - The ESP

    /// Where the ESP is mounted (systemd-bless-boot needs it there too).
    public static let esp = "/efi"

    // MARK: - In the image (read-only)

    /// Who the running image is (`ImageIdentity` as JSON).
    public static let imageIdentity = "/usr/lib/micromirror/image.json"
    /// One sync recipe per project, `PROJECT.yaml`.
    public static let recipes = "/usr/share/micromirror/recipes"
    /// Public keys the image trusts for updates.
    public static let keyring = "/usr/share/micromirror/keyring"
}
