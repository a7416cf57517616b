import Foundation
import MicromirrorKit
import MicromirrorTestSupport
import Testing

/// What the built image's read-only root holds for least privilege and an appliance's quiet
/// habits, checked on the mounted erofs with systemd's own tools.
@Suite("Built image: sandboxed units and appliance settings", .serialized)
struct ImageHardeningTests {
    /// The units the image ships (everything of ours that runs).
    static let units = [
        "mm-firstboot.service", "mm-boot-status.service", "mm-node-serve.service", "mm-node-sync.service", "mm-srv-layout.service", "mm-node-health.service",
        "mm-node-update.service", "mm-rsyncd.service",
    ]

    /// Mounts slot A's erofs read-only for `body`.
    static func withRoot<T>(_ body: (String) async throws -> T) async throws -> T {
        let a = try await BuiltImage.shared.artifacts()
        let manifest = try Manifest.parse(Array(try Data(contentsOf: URL(fileURLWithPath: a.manifest))), source: a.manifest)
        let root = try #require(manifest.partitions.first { $0.label == "mm-root-a" })
        return try await TestSupport.withLoopDevice(a.image, offset: root.offset, length: root.size) { device in
            let mountpoint = try await TestSupport.scratch("erofs-hardening")
            try await TestSupport.check("mount", ["-t", "erofs", "-o", "ro", device, mountpoint])
            defer { ToolRun.cleanUp("umount", [mountpoint]) }
            return try await body(mountpoint)
        }
    }

    static func read(_ root: String, _ path: String) throws -> String {
        try String(contentsOfFile: root + path, encoding: .utf8)
    }

    @Test("systemd-analyze security rates every unit of ours 3.0 or better (the units as installed in the image)")
    func securityScores() async throws {
        try await Self.withRoot { root in
            for unit in Self.units {
                let out = try await TestSupport.run("systemd-analyze", ["security", "--offline=true", "--root=\(root)", "--no-pager", unit])
                let match = try #require(out.stdout.firstMatch(of: /Overall exposure level for \S+: (\d+\.\d+)/), "\(unit): \(out.combined.suffix(2000))")
                let score = try #require(Double(match.1))
                print("systemd-analyze security: \(unit) \(score)")
                #expect(score <= 3.0, "\(unit) rates \(score):\n\(out.stdout.split(separator: "\n").filter { $0.contains("✗") }.joined(separator: "\n"))")
            }
            #expect(!FileManager.default.fileExists(atPath: root + "/usr/lib/systemd/system/mm-node.service"), "the root-run mm-node.service is gone")
        }
    }

    @Test("the server and the sync run as different users; the server is not in the mirror group; /srv's layout gives mirror the mirror")
    func users() async throws {
        try await Self.withRoot { root in
            let passwd = try Self.read(root, "/etc/passwd")
            let group = try Self.read(root, "/etc/group")
            #expect(passwd.contains("\nmirror:x:850:850:"), "\(passwd)")
            #expect(passwd.contains("\nmm-serve:x:851:851:"), "\(passwd)")
            let mirrorGroup = try #require(group.split(separator: "\n").first { $0.hasPrefix("mirror:") })
            #expect(!mirrorGroup.contains("mm-serve"), "mm-serve must not be in group mirror: \(mirrorGroup)")
            #expect(!group.split(separator: "\n").contains { $0.hasSuffix("mm-serve") && !$0.hasPrefix("mm-serve:") }, "mm-serve is in no other group")
            // The rsync daemon for downstream mirrors: its own user, in no group but its own, as the server.
            #expect(passwd.contains("\nmm-rsync:x:853:853:"), "\(passwd)")
            #expect(!group.split(separator: "\n").contains { $0.contains("mm-rsync") && !$0.hasPrefix("mm-rsync:") }, "mm-rsync is in no other group")
            let rsyncd = try Self.read(root, "/usr/lib/systemd/system/mm-rsyncd.service")
            #expect(rsyncd.contains("User=mm-rsync") && rsyncd.contains("CapabilityBoundingSet=CAP_NET_BIND_SERVICE\n") && rsyncd.contains("mm-node rsyncd-config"))
            let wanted = try? FileManager.default.destinationOfSymbolicLink(atPath: root + "/etc/systemd/system/multi-user.target.wants/mm-rsyncd.service")
            #expect(wanted?.hasSuffix("/systemd/system/mm-rsyncd.service") == true, "mm-rsyncd is not enabled")
            let serve = try Self.read(root, "/usr/lib/systemd/system/mm-node-serve.service")
            #expect(serve.contains("User=mm-serve") && serve.contains("--services serve") && serve.contains("CapabilityBoundingSet=CAP_NET_BIND_SERVICE\n"))
            #expect(serve.contains("RequiresMountsFor=/srv"))
            let sync = try Self.read(root, "/usr/lib/systemd/system/mm-node-sync.service")
            #expect(sync.contains("User=mirror") && sync.contains("--services sync") && sync.contains("CapabilityBoundingSet=\n"))
            #expect(sync.contains("RequiresMountsFor=/srv"))
            let layout = try Self.read(root, "/usr/lib/micromirror/srv-layout.conf")
            #expect(layout.contains("d /srv/mirror       0755 mirror mirror"))
            // Projects in cache mode: the server writes their caches there and nowhere else in the content.
            #expect(layout.contains("d /srv/cache        0755 mm-serve mm-serve"))
            let writable = serve.split(separator: "\n").filter { $0.hasPrefix("ReadWritePaths=") }
            #expect(writable == ["ReadWritePaths=/srv/log -/srv/state/traffic -/srv/cache"], "\(writable)")
            #expect(!sync.contains("/srv/cache"), "the sync service does not touch the caches")
            let fstab = try Self.read(root, "/etc/fstab")
            #expect(fstab.contains("PARTLABEL=mm-data") && fstab.contains("x-systemd.after=mm-firstboot.service"), "\(fstab)")
            #expect(fstab.contains("/srv/log/journal  /var/log/journal  none  bind"), "\(fstab)")
        }
    }

    @Test("an appliance: no apt timers, no LLMNR or mDNS, only an ed25519 host key, no mm-image, the machine id set in the initramfs")
    func applianceSettings() async throws {
        try await Self.withRoot { root in
            for timer in ["apt-daily.timer", "apt-daily-upgrade.timer", "apt-daily.service", "apt-daily-upgrade.service"] {
                let link = try? FileManager.default.destinationOfSymbolicLink(atPath: root + "/etc/systemd/system/" + timer)
                #expect(link == "/dev/null", "\(timer) is not masked")
            }
            let resolved = try Self.read(root, "/usr/lib/systemd/resolved.conf.d/60-micromirror.conf")
            #expect(resolved.contains("LLMNR=no") && resolved.contains("MulticastDNS=no"))
            let sshd = try Self.read(root, "/etc/ssh/sshd_config.d/micromirror.conf")
            let hostKeys = sshd.split(separator: "\n").filter { $0.hasPrefix("HostKey ") }
            #expect(hostKeys == ["HostKey /etc/ssh/ssh_host_ed25519_key"])
            let dropIns = (try? FileManager.default.contentsOfDirectory(atPath: root + "/etc/systemd/system/ssh.service.d")) ?? []
            for name in dropIns {
                #expect(!(try Self.read(root, "/etc/systemd/system/ssh.service.d/" + name)).contains("ssh-keygen"), "\(name) makes host keys")
            }
            let hostKeyFiles = try FileManager.default.contentsOfDirectory(atPath: root + "/etc/ssh").filter { $0.hasPrefix("ssh_host_") }
            #expect(hostKeyFiles.isEmpty, "host keys baked in: \(hostKeyFiles)")
            #expect(!FileManager.default.fileExists(atPath: root + "/usr/bin/mm-image"), "mm-image is the NOC's tool, not the node's")
            #expect(FileManager.default.isExecutableFile(atPath: root + "/usr/bin/mm-firstboot"))
            #expect(FileManager.default.isExecutableFile(atPath: root + "/usr/bin/mm-node"))
            let journald = try Self.read(root, "/usr/lib/systemd/journald.conf.d/60-micromirror.conf")
            #expect(journald.contains("Storage=persistent") && journald.contains("SystemMaxUse="))
        }
    }
}
