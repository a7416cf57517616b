import Foundation
import ImageBuilderCore
import Logging
import MicromirrorKit
import MicromirrorTestSupport
import SystemKit
import Testing

/// The real image boots under QEMU (TCG) + OVMF through systemd-boot to multi-user, and reports
/// on its serial console which slot it booted and which units failed.
@Suite("QEMU boot", .serialized)
struct QEMUBootTests {
    /// A sparse copy of the fixture image, `growBy` bytes larger (a bigger SSD).
    static func copyImage(_ a: BuiltImage.Artifacts, growBy: Int64 = 0) async throws -> String {
        let size = try #require(try FileManager.default.attributesOfItem(atPath: a.image)[.size] as? NSNumber).int64Value
        return try await TestSupport.copyImage(a.image, scratchName: "boot", size: growBy > 0 ? size + growBy : nil)
    }

    static func boot(
        _ image: String, expectFailed: String = "none", mac: String? = "52:54:00:12:34:56", then: String? = nil, ssh: String? = nil,
        log name: String = "serial.log"
    ) async throws -> (TestSupport.Output, String) {
        let log = (image as NSString).deletingLastPathComponent + "/" + name
        var args = [image, "--expect-slot", "a", "--expect-failed", expectFailed, "--timeout", "600", "--log", log]
        if let then { args += ["--then", then] }
        // With a key: log in over ssh, then power off cleanly; the disk keeps what the guest wrote.
        if let ssh { args += ["--ssh", ssh, "--poweroff", "--writable"] }
        if let mac { args += ["--nic-mac", mac] }
        let result = try await TestSupport.run(TestSupport.packageRoot + "/scripts/qemu-boot.sh", args)
        // The firmware writes bytes that are not UTF-8: decode leniently.
        let console = String(decoding: (try? Data(contentsOf: URL(fileURLWithPath: log))) ?? Data(), as: UTF8.self)
        return (result, console)
    }

    /// What the guest shows about itself, one `key=value` or a labelled block per check.
    static let guestReport = #"""
        set -u
        echo "machine-id=$(cat /etc/machine-id)"
        echo "stored-id=$(cat /var/lib/mm-config/identity/machine-id)"
        echo "boots=$(journalctl --list-boots --no-pager -q | wc -l)"
        echo "previous-serve-lines=$(journalctl -b -1 -u mm-node-serve.service --no-pager -q 2>/dev/null | wc -l)"
        echo "srv=$(findmnt -n -o SOURCE,FSTYPE /srv)"
        echo "journal-mount=$(findmnt -n -o FSTYPE,TARGET /var/log/journal)"
        echo "journal-dirs=$(ls /srv/log/journal)"
        echo "host-keys=$(ls /etc/ssh | grep '^ssh_host_' | tr '\n' ' ')"
        echo "apt-timers=$(systemctl is-enabled apt-daily.timer apt-daily-upgrade.timer | tr '\n' ' ')"
        echo "llmnr=$(resolvectl llmnr | tr '\n' ' ')"
        echo "mdns=$(resolvectl mdns | tr '\n' ' ')"
        echo "listening=$(ss -Hltn | awk '{print $4}' | grep -v -e '^127\.' -e '^\[::1\]' | sed 's/.*://' | sort -un | tr '\n' ' ')"
        echo "udp-listening=$(ss -Hlun | awk '{print $4}' | grep -v -e '^127\.' -e '^\[::1\]' | sed 's/.*://' | sort -un | tr '\n' ' ')"
        echo "firewall=$(nft list table inet micromirror | grep -o 'tcp dport {[^}]*}')"
        echo "node-users=$(for u in mm-node-serve mm-rsyncd mm-node-sync mm-node-update; do echo "$u:$(ps -o user= -p "$(systemctl show -p MainPID --value $u)")"; done | tr '\n' ' ')"
        echo "owners=$(stat -c '%U:%G:%a' /srv/mirror /srv/state/sync /srv/log | tr '\n' ' ')"
        # Pre-release content as rsync stages it (mode 0750, owned by mirror) is not served; public content is.
        install -d -o mirror -g mirror -m 0755 /srv/mirror/mmtest
        install -d -o mirror -g mirror -m 0750 /srv/mirror/mmtest/staged
        echo public | install -o mirror -g mirror -m 0644 /dev/stdin /srv/mirror/mmtest/public.txt
        echo secret | install -o mirror -g mirror -m 0640 /dev/stdin /srv/mirror/mmtest/staged/secret.txt
        get() { exec 3<>/dev/tcp/127.0.0.1/80; printf 'GET %s HTTP/1.1\r\nHost: node\r\nConnection: close\r\n\r\n' "$1" >&3; head -1 <&3 | tr -d '\r'; exec 3<&-; }
        echo "public=$(get /mmtest/public.txt)"
        echo "staged=$(get /mmtest/staged/secret.txt)"
        rm -rf /srv/mirror/mmtest
        # The rsync daemon for downstream mirrors: a module per project; the same rule for staged content.
        install -d -o mirror -g mirror -m 0755 /srv/mirror/almalinux /srv/mirror/almalinux/mmtest
        install -d -o mirror -g mirror -m 0750 /srv/mirror/almalinux/mmtest/staged
        echo public | install -o mirror -g mirror -m 0644 /dev/stdin /srv/mirror/almalinux/mmtest/public.txt
        echo secret | install -o mirror -g mirror -m 0640 /dev/stdin /srv/mirror/almalinux/mmtest/staged/secret.txt
        echo "rsync-modules=$(rsync --contimeout=5 rsync://127.0.0.1/ | awk '{print $1}' | tr '\n' ' ')"
        rm -rf /tmp/pull; rsync -r --contimeout=5 rsync://127.0.0.1/almalinux/mmtest/ /tmp/pull/ >/dev/null 2>&1
        echo "rsync-pulled=$(cd /tmp/pull && find . -type f | sort | tr '\n' ' ')"
        echo "rsync-checksum=$(rsync -r --checksum --contimeout=5 rsync://127.0.0.1/almalinux/mmtest/ /tmp/pull2/ 2>&1 | grep -c 'refuse')"
        rm -rf /srv/mirror/almalinux/mmtest /tmp/pull
        for unit in mm-firstboot.service mm-boot-status.service mm-node-serve.service mm-rsyncd.service mm-node-sync.service mm-srv-layout.service; do
          echo "exposure $unit=$(systemd-analyze security --no-pager "$unit" | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')"
        done
        """#

    /// `key=value` lines of a guest report.
    static func fields(_ report: String) -> [String: String] {
        var out: [String: String] = [:]
        for line in report.split(separator: "\n") {
            guard let eq = line.firstIndex(of: "=") else { continue }
            out[String(line[..<eq])] = line[line.index(after: eq)...].trimmingCharacters(in: .whitespaces)
        }
        return out
    }

    @Test("flashed with the example node file, the image boots slot A to multi-user with no failed units, twice; the journal and machine id persist")
    func bootsSlotA() async throws {
        let a = try await BuiltImage.shared.artifacts()
        let image = try await Self.copyImage(a, growBy: 1 << 30)
        let dir = (image as NSString).deletingLastPathComponent
        // The example node file, also trusting a key of ours so the test can log in.
        try await TestSupport.check("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "mm-test", "-f", dir + "/key"])
        let pub = try String(contentsOfFile: dir + "/key.pub", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let node = try String(contentsOfFile: TestSupport.packageRoot + "/nodes/example.yaml", encoding: .utf8)
            .replacingOccurrences(of: "ssh-keys:\n", with: "ssh-keys:\n  - \(pub)\n")
        try node.write(toFile: dir + "/node.yaml", atomically: true, encoding: .utf8)
        try await TestSupport.check(TestSupport.mmImage, ["node", "write", image, dir + "/node.yaml"])
        try Self.guestReport.write(toFile: dir + "/report.sh", atomically: true, encoding: .utf8)
        let report = { (n: Int) in "$MM_GUEST_SSH bash -s < \(dir)/report.sh > \(dir)/report\(n).txt" }

        let (result, console) = try await Self.boot(image, then: report(1), ssh: dir + "/key", log: "serial1.log")
        #expect(result.status == 0, "boot failed:\n\(result.combined.suffix(4000))")
        #expect(result.stdout.contains("qemu-boot: guest powered off"), "\(result.stdout)")
        #expect(console.contains("micromirror: tmpfs overlay on the read-only root"))
        #expect(console.contains("micromirror-boot: slot=a root=mm-root-a image=micromirror version=0.1.0 build=\(BuiltImage.sourceDateEpoch) hardware=qemu-x86_64"))
        #expect(console.contains("mm-firstboot: applied example-isp.mm.fcix.net"), "firstboot did not apply the node file")
        #expect(console.contains("tcp=bbr qdisc=fq_codel firstboot=active watchdog="), "the mirror's sysctls are not in effect")
        // systemd keeps the chipset watchdog running: a frozen boot resets (the update test freezes one).
        #expect(console.contains("watchdog=30s/iTCO_wdt failed=none"), "no hardware watchdog in use")
        #expect(console.contains("grew mm-data"), "first boot did not grow mm-data into the larger disk")
        #expect(console.contains("created ssh host key, node key"))
        #expect(console.contains("micromirror: created machine id"), "the initramfs did not make the machine id")
        let first = Self.fields((try? String(contentsOfFile: dir + "/report1.txt", encoding: .utf8)) ?? "")
        print("guest report, first boot: \(first.sorted { $0.key < $1.key })")
        let id = try #require(first["machine-id"])
        #expect(id.count == 32 && id == first["stored-id"], "machine id \(id) is not mm-config's \(first["stored-id"] ?? "-")")
        #expect(first["srv"] == "/dev/vda5 ext4", "mm-data is not on /srv")
        #expect(first["journal-mount"]?.hasSuffix("/var/log/journal") == true, "no bind mount of the journal")
        #expect(first["journal-dirs"] == id, "the persistent journal is not filed under the machine id")
        #expect(first["host-keys"] == "ssh_host_ed25519_key ssh_host_ed25519_key.pub", "host keys: \(first["host-keys"] ?? "-")")
        #expect(first["apt-timers"] == "masked masked")
        #expect(first["llmnr"]?.contains("yes") == false && first["llmnr"]?.contains("Global: no") == true, "LLMNR: \(first["llmnr"] ?? "-")")
        #expect(first["mdns"]?.contains("yes") == false && first["mdns"]?.contains("Global: no") == true, "mDNS: \(first["mdns"] ?? "-")")
        // The firewall opens exactly the TCP ports something listens on beyond loopback.
        #expect(first["listening"] == "22 80 873", "listening: \(first["listening"] ?? "-")")
        #expect(first["firewall"] == "tcp dport { 22, 80, 873 }", "firewall: \(first["firewall"] ?? "-")")
        #expect(first["udp-listening"] == "", "UDP listeners: \(first["udp-listening"] ?? "-")")
        // Serving and syncing unprivileged; only the updater (no capabilities) is root.
        #expect(
            first["node-users"] == "mm-node-serve:mm-serve mm-rsyncd:mm-rsync mm-node-sync:mirror mm-node-update:root", "mm-node runs as: \(first["node-users"] ?? "-")"
        )
        #expect(first["owners"] == "mirror:mirror:755 mirror:mirror:755 root:mm-serve:1775")
        #expect(first["public"] == "HTTP/1.1 200 OK", "public: \(first["public"] ?? "-")")
        #expect(first["staged"]?.hasPrefix("HTTP/1.1 4") == true, "content staged 0750 must not be served: \(first["staged"] ?? "-")")
        #expect(first["rsync-modules"] == "ubuntu-releases almalinux archlinux", "rsync modules: \(first["rsync-modules"] ?? "-")")
        #expect(first["rsync-pulled"] == "./public.txt", "pulled over rsync: \(first["rsync-pulled"] ?? "-")")
        #expect(first["rsync-checksum"] == "1", "a --checksum pull is not refused: \(first["rsync-checksum"] ?? "-")")
        for unit in ["mm-firstboot.service", "mm-boot-status.service", "mm-node-serve.service", "mm-rsyncd.service", "mm-node-sync.service", "mm-srv-layout.service"] {
            let score = first["exposure \(unit)"].flatMap(Double.init)
            #expect(score != nil && score! <= 3.0, "\(unit) on the running node: \(first["exposure \(unit)"] ?? "-")")
        }

        // The same disk again: the previous boot's journal is there, under the same machine id.
        let (again, console2) = try await Self.boot(image, then: report(2), ssh: dir + "/key", log: "serial2.log")
        #expect(again.status == 0, "second boot failed:\n\(again.combined.suffix(4000))")
        #expect(!console2.contains("created machine id"), "the second boot made a new machine id")
        let second = Self.fields((try? String(contentsOfFile: dir + "/report2.txt", encoding: .utf8)) ?? "")
        #expect(second["machine-id"] == id && second["stored-id"] == id)
        #expect(Int(second["boots"] ?? "") ?? 0 >= 2, "journalctl --list-boots: \(second["boots"] ?? "-")")
        #expect(Int(second["previous-serve-lines"] ?? "") ?? 0 > 0, "journalctl -b -1 -u mm-node-serve shows nothing")
    }

    @Test("on a tap bridged in a test namespace, the guest answers on its static IPv4 and IPv6 with CS1 replies, over HTTP and rsync, and syncs a project from an rsync daemon there, marked CS1 too; it reports to a TLS watchtower there with the certificate on mm-config, renews it and keeps the new one on mm-config")
    func reachableWithCS1() async throws {
        let a = try await BuiltImage.shared.artifacts()
        let image = try await Self.copyImage(a)
        let dir = (image as NSString).deletingLastPathComponent
        // The example node, its upstream an rsync daemon on the gateway in the test namespace.
        let node = try String(contentsOfFile: TestSupport.packageRoot + "/nodes/example.yaml", encoding: .utf8)
            .replacingOccurrences(of: "upstream: rsync://mirror.fcix.net/", with: "upstream: rsync://192.0.2.1/")
            .replacingOccurrences(of: "target: mqtts://watchtower.fcix.net:8883", with: "target: mqtts://192.0.2.1:8883")
            .replacingOccurrences(of: "projects: [ubuntu-releases, almalinux, archlinux]", with: "projects: [ubuntu-releases, almalinux, archlinux, debian-cd]")
        #expect(node.contains("debian-cd"), "the example node's projects changed; add debian-cd (in cache mode) another way")
        try node.write(toFile: dir + "/node.yaml", atomically: true, encoding: .utf8)
        try await TestSupport.check(TestSupport.mmImage, ["node", "write", image, dir + "/node.yaml"])
        // The watchtower on the gateway: a fleet CA, and the node's certificate issued 25 days ago for
        // 30, so it is due for renewal the moment it reports.
        let authority = try FleetAuthority.create(directory: dir + "/fleet-ca", brokerNames: ["192.0.2.1"])
        let host = "example-isp.mm.fcix.net"
        let (key, certificate) = try authority.issueIdentity(node: host, now: Date() - 25 * 86400)
        try await NodeFileWriter(logger: Logger(label: "test")).placeCredential(key: key, certificate: certificate, authority: authority.certificate, on: image)
        let upstream = dir + "/upstream"
        let os = upstream + "/9/BaseOS/x86_64/os"
        try FileManager.default.createDirectory(atPath: os + "/repodata", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: os + "/Packages", withIntermediateDirectories: true)
        try "<repomd>mmtest \(UUID().uuidString)</repomd>\n".write(toFile: os + "/repodata/repomd.xml", atomically: true, encoding: .utf8)
        try Data((0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }).write(to: URL(fileURLWithPath: os + "/Packages/mmtest-1.0-1.noarch.rpm"))
        // debian-cd is in cache mode (its shipped recipe names no origin: the upstream's host over HTTP).
        let origin = dir + "/origin"
        try FileManager.default.createDirectory(atPath: origin + "/debian-cd/current", withIntermediateDirectories: true)
        try Data((0..<2_000_000).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 3) }).write(to: URL(fileURLWithPath: origin + "/debian-cd/current/mm-test.iso"))
        let result = try await TestSupport.run(
            TestSupport.packageRoot + "/scripts/e2e-network.sh",
            [
                image, "--expect-dscp", "cs1", "--upstream", upstream, "--origin", origin, "--watchtower", authority.directory, "--mm-image", TestSupport.mmImage,
                "--writable",
            ]
        )
        #expect(result.status == 0, "e2e failed:\n\(result.combined.suffix(4000))")
        #expect(result.stdout.contains("IP (tos 0x20"), "no CS1-marked IPv4 reply captured")
        #expect(result.stdout.contains("IP6 (class 0x20"), "no CS1-marked IPv6 reply captured")
        // The rsync daemon for downstream mirrors, on both families, marked too (the script checks none is unmarked).
        // Exactly the mirrored projects: debian-cd, in cache mode, is not whole and gets no module.
        #expect(result.stdout.contains("e2e: rsync://192.0.2.10/ lists: ubuntu-releases almalinux archlinux \n"), "\(result.stdout)")
        #expect(result.stdout.contains("e2e: rsync://[2001:db8:10::10]/ lists: ubuntu-releases almalinux archlinux \n"), "\(result.stdout)")
        // The booted node synced a project from an rsync daemon in the namespace and serves it, its rsync marked CS1 too.
        #expect(result.stdout.contains("e2e: the node synced almalinux from rsync://192.0.2.1/ and serves it"), "\(result.stdout)")
        #expect(result.stdout.contains("e2e: status: \"state\" : \"success\""), "\(result.stdout)")
        #expect(result.stdout.contains("e2e: the node's rsync packets to its upstream: with CS1"), "\(result.stdout)")
        // The project in cache mode: fetched once from the origin through the sandboxed server (it
        // writes /srv/cache), then a hit; its requests to the origin marked CS1 like the rest.
        #expect(result.stdout.contains("e2e: cache: request 1: 200 X-Cache: MISS"), "\(result.stdout)")
        #expect(result.stdout.contains("e2e: cache: request 2: 200 X-Cache: HIT"), "\(result.stdout)")
        #expect(result.stdout.contains("e2e: cache: origin requests for the file: 1"), "\(result.stdout)")
        #expect(result.stdout.contains("e2e: cache status: cache files 1 hits 1 misses 1 origin http://192.0.2.1/debian-cd/"), "\(result.stdout)")
        #expect(result.stdout.contains("e2e: the node's HTTP packets to its origin: with CS1"), "\(result.stdout)")
        // The node reported to the watchtower with the certificate the NOC put on mm-config, renewed it
        // itself (the sync service writes its credential directory on mm-config) and logged in with the new one.
        #expect(result.stdout.contains("e2e: watchtower status: micromirror/nodes/\(host)/status online"), "\(result.stdout)")
        #expect(result.stdout.contains("e2e: watchtower renewal: ") && result.stdout.contains(" \(host) renewed: valid until "), "\(result.stdout)")
        #expect(result.stdout.contains("e2e: watchtower logins: 2") || result.stdout.contains("e2e: watchtower logins: 3"), "\(result.stdout)")
        // The service reads the interface counters through /proc/self/net (ProcSubset=pid hides /proc/net).
        let sent = result.stdout.split(separator: "\n").first { $0.hasPrefix("e2e: watchtower sent bytes: ") }.flatMap { Int64($0.split(separator: " ").last ?? "") }
        #expect((sent ?? 0) > 0, "\(result.stdout)")
        let renewed = try #require(try authority.current(node: host))
        #expect(renewed.serial != certificate.serial)
        let manifest = try Manifest.parse(Array(try Data(contentsOf: URL(fileURLWithPath: a.manifest))), source: a.manifest)
        let config = try #require(manifest.partitions.first { $0.label == "mm-config" })
        // QEMU was stopped with mm-config mounted: replay its journal first (the rename may be only there).
        _ = try await TestSupport.run("debugfs", ["-w", "-R", "journal_run", "\(image)?offset=\(config.offset)"])
        let onDisk = try await TestSupport.run("debugfs", ["-R", "cat credential/node.crt", "\(image)?offset=\(config.offset)"])
        let kept = try X509Certificate(pem: Array(onDisk.stdout.utf8), source: "mm-config")
        #expect(kept.serial == renewed.serial, "mm-config holds the renewed certificate (the first was \(certificate.serial))")
    }

    @Test("with a broken node file the console says what is wrong")
    func brokenNodeFile() async throws {
        let a = try await BuiltImage.shared.artifacts()
        let image = try await Self.copyImage(a)
        // Bypass `mm-image node write` (it refuses invalid files) to put a broken file on the disk.
        let manifest = try Manifest.parse(Array(try Data(contentsOf: URL(fileURLWithPath: a.manifest))), source: a.manifest)
        let config = try #require(manifest.partitions.first { $0.label == "mm-config" })
        let broken = (image as NSString).deletingLastPathComponent + "/node.yaml"
        let text = try String(contentsOfFile: TestSupport.packageRoot + "/nodes/example.yaml", encoding: .utf8)
            .replacingOccurrences(of: "192.0.2.10/24", with: "192.0.2.10/99")
        try text.write(toFile: broken, atomically: true, encoding: .utf8)
        try await TestSupport.check("debugfs", ["-w", "-R", "write \(broken) node.yaml", "\(image)?offset=\(config.offset)"])
        // Give getty a few seconds after multi-user to print the login banner with our report.
        let (result, console) = try await Self.boot(image, expectFailed: "mm-firstboot.service", then: "sleep 10")
        #expect(result.status == 0, "boot failed:\n\(result.combined.suffix(4000))")
        #expect(console.contains("PROBLEM: /var/lib/mm-config/node.yaml:"), "the console does not show the problem")
        #expect(console.contains("network.ipv4.address: prefix /99 is out of range for IPv4"))
        #expect(console.contains("NODE FILE PROBLEMS"), "the login banner does not show the problem")
    }
}
