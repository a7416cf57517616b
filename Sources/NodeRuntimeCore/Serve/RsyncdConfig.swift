/// The node's rsync daemon for downstream mirrors (FCIX nodes offer rsync as well as HTTP): one
/// read-only module per project of the node file, written as `rsyncd.conf` by
/// `mm-node rsyncd-config` each time `mm-rsyncd.service` starts.
///
/// What keeps it polite and safe, after Fedora's public rsync sample and the FCIX nodes:
/// - read only, and `refuse options = checksum` (a `--checksum` run reads every byte of the tree
///   for one client); the options that follow symlinks on the node's side (`--copy-links` and
///   its kin) are refused too, so no link is ever read through; `--delete` stays allowed (a
///   downstream mirror deletes on its own side);
/// - `max connections` per module (rsync counts them in the lock file);
/// - `dont compress` for payloads that are compressed already;
/// - it runs unprivileged (its own user, not in group `mirror`), without chroot (which needs
///   root); a daemon started as root would switch to `nobody`. Either way what the sync staged
///   unreadable to others (pre-bitflip content, mode 0750 or 0640) cannot be read, and
///   `ignore nonreadable` leaves it out of listings: the same rule the HTTP server keeps;
/// - rsync's own work areas (`.~tmp~`, where the sync gathers a pass's files) are excluded.
public struct RsyncdConfig: Sendable, Equatable {
    public var projects: [String]
    /// The mirror root; a project's module is `root/PROJECT`.
    public var root: String
    /// The node's name, in each module's comment.
    public var node: String
    /// Connections per module at once.
    public var maxConnections = 10
    /// Seconds without I/O before a client is dropped.
    public var timeout = 600
    /// rsync's lock file for `max connections`.
    public var lockFile = "/run/mm-rsyncd/rsyncd.lock"

    /// Already compressed: not worth the node's CPU (a GX-415GA) to compress again.
    public static let dontCompress = [
        "*.gz", "*.tgz", "*.zip", "*.z", "*.Z", "*.bz2", "*.tbz", "*.xz", "*.txz", "*.zst", "*.lz", "*.lzma", "*.7z", "*.rpm", "*.drpm", "*.deb", "*.udeb",
        "*.iso", "*.img", "*.qcow2", "*.squashfs", "*.sfs", "*.jpg", "*.png", "*.mp4", "*.mkv", "*.webm", "*.apk", "*.msi", "*.dmg", "*.exe",
    ]

    public init(projects: [String], root: String, node: String) {
        self.projects = projects
        self.root = root
        self.node = node
    }

    /// The `rsyncd.conf` text.
    public func render() -> String {
        var text = """
            # Written by mm-node rsyncd-config from the node file each time mm-rsyncd starts; do not edit.
            use chroot = no
            read only = yes
            write only = no
            list = yes
            max connections = \(maxConnections)
            lock file = \(lockFile)
            timeout = \(timeout)
            reverse lookup = no
            ignore nonreadable = yes
            transfer logging = no
            refuse options = checksum copy-links copy-unsafe-links copy-dirlinks keep-dirlinks
            dont compress = \(Self.dontCompress.joined(separator: " "))
            exclude = .~tmp~/

            """
        for project in projects {
            text += """

                [\(project)]
                    path = \(root.hasSuffix("/") ? String(root.dropLast()) : root)/\(project)
                    comment = \(project) on \(node)

                """
        }
        return text
    }
}
