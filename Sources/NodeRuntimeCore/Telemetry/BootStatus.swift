import Foundation
import MicromirrorKit
import SystemKit

/// Which slot the running system booted and which image it is, from the kernel command line
/// (`mm.slot=`, `root=PARTLABEL=`) and the image identity (`NodePaths.imageIdentity`).
public struct BootStatus: Sendable, Equatable {
    public var slot: String
    public var rootLabel: String
    public var name: String
    public var version: String
    public var buildNumber: Int64
    public var hardware: String
    /// Units systemd reports as failed (empty when all is well).
    public var failedUnits: [String] = []
    /// systemd's ActiveState of mm-firstboot.service ("active" once the node file was applied).
    public var firstboot: String = "unknown"
    /// The TCP congestion control and default qdisc in effect (the mirror's sysctls).
    public var tcp: String = "unknown"
    public var qdisc: String = "unknown"
    /// The hardware watchdog systemd keeps pinging (`30s/iTCO_wdt`), or `off`: a frozen boot resets.
    public var watchdog: String = "unknown"

    /// The one line printed to the console at boot; the QEMU boot test waits for it.
    public var line: String {
        "micromirror-boot: slot=\(slot) root=\(rootLabel) image=\(name) version=\(version) build=\(buildNumber) hardware=\(hardware) tcp=\(tcp) qdisc=\(qdisc) firstboot=\(firstboot) watchdog=\(watchdog) failed=\(failedUnits.isEmpty ? "none" : failedUnits.joined(separator: ","))"
    }

    public static func read(cmdlinePath: String = "/proc/cmdline", identityPath: String = NodePaths.imageIdentity) throws -> BootStatus {
        let cmdline = KernelCommandLine.read(path: cmdlinePath)
        let identity = try ImageIdentity.load(path: identityPath)
        var status = BootStatus(
            slot: cmdline.slot, rootLabel: cmdline.rootLabel, name: identity.name, version: identity.version, buildNumber: identity.buildNumber,
            hardware: identity.hardware
        )
        func sysctl(_ path: String) -> String {
            (try? String(contentsOfFile: path, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "unknown"
        }
        status.tcp = sysctl("/proc/sys/net/ipv4/tcp_congestion_control")
        status.qdisc = sysctl("/proc/sys/net/core/default_qdisc")
        return status
    }

    /// Fills in the failed units and mm-firstboot's state from systemd.
    public mutating func readUnits(runner: CommandRunner) async throws {
        let systemctl = Tool("systemctl", package: "systemd")
        let listing = try await runner.run(systemctl, ["list-units", "--state=failed", "--plain", "--no-legend", "--no-pager"])
        failedUnits = listing.split(separator: "\n").compactMap { $0.split(separator: " ").first.map(String.init) }
        firstboot = try await runner.run(systemctl, ["show", "--property=ActiveState", "--value", "mm-firstboot.service"])
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let interval = try await runner.run(systemctl, ["show", "--property=RuntimeWatchdogUSec", "--value"]).trimmingCharacters(in: .whitespacesAndNewlines)
        watchdog = Self.watchdog(interval: interval, identity: try? String(contentsOfFile: "/sys/class/watchdog/watchdog0/identity", encoding: .utf8))
    }

    /// `INTERVAL/DRIVER` of the runtime watchdog, `off` when systemd keeps none.
    static func watchdog(interval: String, identity: String?) -> String {
        guard !interval.isEmpty, interval != "0", interval != "infinity" else { return "off" }
        let driver = identity?.trimmingCharacters(in: .whitespacesAndNewlines).replacingOccurrences(of: " ", with: "_") ?? ""
        return driver.isEmpty ? interval : interval + "/" + driver
    }
}
