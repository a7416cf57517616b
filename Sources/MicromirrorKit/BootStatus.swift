import Foundation

/// Which slot the running system booted and which image it is, from the kernel command line
/// (`mm.slot=`, `root=PARTLABEL=`) and `/usr/lib/micromirror/image.json`.
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

    /// The one line printed to the console at boot; the QEMU boot test waits for it.
    public var line: String {
        "micromirror-boot: slot=\(slot) root=\(rootLabel) image=\(name) version=\(version) build=\(buildNumber) hardware=\(hardware) tcp=\(tcp) qdisc=\(qdisc) firstboot=\(firstboot) failed=\(failedUnits.isEmpty ? "none" : failedUnits.joined(separator: ","))"
    }

    public static func read(cmdlinePath: String, identityPath: String) throws -> BootStatus {
        let cmdline = (try? String(contentsOfFile: cmdlinePath, encoding: .utf8)) ?? ""
        var slot = "unknown"
        var root = "unknown"
        for word in cmdline.split(whereSeparator: { $0 == " " || $0 == "\n" }) {
            if word.hasPrefix("mm.slot=") { slot = String(word.dropFirst("mm.slot=".count)) }
            if word.hasPrefix("root=PARTLABEL=") { root = String(word.dropFirst("root=PARTLABEL=".count)) }
        }
        struct Identity: Decodable {
            var name: String
            var version: String
            var buildNumber: Int64
            var hardware: String
        }
        guard let data = FileManager.default.contents(atPath: identityPath),
            let identity = try? JSONDecoder().decode(Identity.self, from: data)
        else {
            throw ConfigError(problems: [ConfigProblem(file: identityPath, line: nil, field: "", message: "missing or unreadable image identity")])
        }
        var status = BootStatus(
            slot: slot, rootLabel: root, name: identity.name, version: identity.version, buildNumber: identity.buildNumber,
            hardware: identity.hardware
        )
        func sysctl(_ path: String) -> String {
            (try? String(contentsOfFile: path, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "unknown"
        }
        status.tcp = sysctl("/proc/sys/net/ipv4/tcp_congestion_control")
        status.qdisc = sysctl("/proc/sys/net/core/default_qdisc")
        return status
    }
}
