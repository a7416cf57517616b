import Foundation
import Logging
import MicromirrorKit
import SystemKit

/// Applies the node file: validates the whole file first; if it is invalid, applies the last file
/// that worked (if any) and says why on the console and in the journal.
public struct Firstboot {
    public struct Options: Sendable {
        /// The node file.
        public var config: String = NodeConfig.defaultPath
        /// Persistent state: the mounted `mm-config` partition.
        public var state: String = NodePaths.standard.config
        /// Root of the running system (tests point it at a scratch directory).
        public var root: String = "/"
        /// sysfs network directory.
        public var sysfsNet: String = "/sys/class/net"
        /// The disk to grow; nil = the disk holding `mm-config`.
        public var disk: String?
        public var steps: Set<FirstbootStep> = Set(FirstbootStep.allCases)

        public init() {}
    }

    public struct Report: Sendable {
        public var applied: NodeConfig?
        public var usedLastGood: Bool
        public var problems: [String]
        public var notes: [String]
    }

    public var options: Options
    public var runner: CommandRunner

    public init(options: Options, runner: CommandRunner) {
        self.options = options
        self.runner = runner
    }

    var paths: NodePaths { NodePaths(config: options.state) }
    var lastGood: String { paths.lastGoodNodeFile }
    var stamp: String { paths.firstbootStamp }

    func path(_ absolute: String) -> String {
        options.root == "/" ? absolute : options.root + absolute
    }

    /// Runs every chosen step. A failing step is reported (console and journal) and the others,
    /// which do not depend on it, still run: a bad SSH key never keeps the disk from being mounted.
    public func run() async throws -> Report {
        var problems: [String] = []
        var notes: [String] = []
        let steps = options.steps
        func step(_ which: FirstbootStep, _ body: () async throws -> Void) async {
            guard steps.contains(which) else { return }
            do { try await body() } catch { problems.append("\(which.rawValue): \(error)") }
        }

        let node = loadNodeFile()
        problems += node.problems
        if node.usedLastGood { notes.append("kept the last node file that worked (\(lastGood))") }
        var addresses: [String] = []
        if let config = node.config {
            await step(.network) { addresses = try await applyNetwork(config) }
            await step(.hostname) { try applyHostname(config) }
            await step(.firewall) { try await applyFirewall(config) }
            await step(.ssh) { try applySSHKeys(config) }
            // The bytes that were validated, not a second read: the file may change meanwhile.
            if !node.usedLastGood, problems.isEmpty, let bytes = node.bytes {
                do { try AtomicFile.write(bytes, to: lastGood, mode: 0o600) } catch { problems.append("last good copy: \(error)") }
            }
        }
        let firstBoot = !FileManager.default.fileExists(atPath: stamp)
        var diskLaidOut = false
        await step(.disk) {
            guard let disk = options.disk ?? DiskGrowth.diskHolding(label: DiskLayout.Label.config) else {
                throw FirstbootError("cannot find the disk holding \(DiskLayout.Label.config)")
            }
            // Every boot: cheap when there is nothing to do, and it finishes a first boot that was cut short.
            let outcome = try await DiskGrowth(disk: disk, runner: runner).run()
            if firstBoot || outcome.changedAnything { notes.append("\(firstBoot ? "first boot: " : "")\(outcome)") }
            diskLaidOut = true
        }
        await step(.identity) {
            let identity = NodeIdentity(state: options.state, runner: runner)
            let made = try await identity.ensure()
            if !made.isEmpty { notes.append("created \(made.joined(separator: ", "))") }
            try identity.install(root: options.root)
        }
        if firstBoot, diskLaidOut {
            do { try AtomicFile.write("first boot completed\n", to: stamp) } catch { problems.append("disk: \(error)") }
        }
        await step(.console) {
            let slot = KernelCommandLine.read(path: path("/proc/cmdline")).slot
            let text = ConsoleReport.render(hostname: node.config?.hostname ?? "unconfigured", addresses: addresses, slot: slot, problems: problems)
            try FileManager.default.createDirectory(atPath: path("/etc/issue.d"), withIntermediateDirectories: true)
            try AtomicFile.write(text, to: path(ConsoleReport.path))
        }
        return Report(applied: node.config, usedLastGood: node.usedLastGood, problems: problems, notes: notes)
    }

    /// The node file, read once and validated; when it is invalid, the last good one.
    func loadNodeFile() -> (config: NodeConfig?, bytes: [UInt8]?, usedLastGood: Bool, problems: [String]) {
        var problems: [String] = []
        do {
            let (config, bytes) = try NodeConfig.loadKeepingBytes(path: options.config)
            return (config, bytes, false, [])
        } catch {
            problems = error.problems.map(\.description)
        }
        if let previous = try? NodeConfig.load(path: lastGood) {
            return (previous, nil, true, problems)
        }
        return (nil, nil, false, problems)
    }

    /// Writes the networkd files and renames the NIC to wan0 (what the .link does via udev, done
    /// here too because udev has already seen the NIC by the time the config partition is mounted).
    func applyNetwork(_ config: NodeConfig) async throws -> [String] {
        let locator = InterfaceLocator(sysfsNet: options.sysfsNet)
        let name = NetworkFiles.interfaceName
        let nic: InterfaceLocator.Interface
        if let current = locator.all().first(where: { $0.name == name }) {
            nic = current
        } else if let found = locator.find(config.interface) {
            nic = found
        } else {
            let wanted: String
            switch config.interface {
            case .mac(let mac): wanted = "a NIC with MAC \(mac)"
            case .firstWired: wanted = "a wired Ethernet NIC"
            }
            throw ConfigError(problems: [ConfigProblem(file: options.config, line: nil, field: "network.interface", message: "no \(wanted) on this machine (found: \(locator.all().map { "\($0.name) \($0.mac)" }.joined(separator: ", ")))")])
        }
        for file in NetworkFiles.render(config, mac: nic.mac) {
            try FileManager.default.createDirectory(atPath: path(NetworkFiles.directory), withIntermediateDirectories: true)
            try AtomicFile.write(file.content, to: path(file.path), mode: file.mode)
        }
        if nic.name != name {
            let ip = Tool("ip", package: "iproute2")
            try await runner.run(ip, ["link", "set", "dev", nic.name, "down"])
            try await runner.run(ip, ["link", "set", "dev", nic.name, "name", name])
        }
        return [config.ipv4?.cidr, config.ipv6?.cidr].compactMap { $0 }
    }

    func applyHostname(_ config: NodeConfig) throws {
        try FileManager.default.createDirectory(atPath: path("/etc"), withIntermediateDirectories: true)
        try AtomicFile.write(config.hostname + "\n", to: path("/etc/hostname"))
        if options.root == "/" {
            guard sethostname(config.hostname, config.hostname.utf8.count) == 0 else { throw FileError("sethostname", config.hostname) }
        }
    }

    func applyFirewall(_ config: NodeConfig) async throws {
        let file = path("/run/micromirror/nftables.nft")
        try FileManager.default.createDirectory(atPath: path("/run/micromirror"), withIntermediateDirectories: true)
        try AtomicFile.write(FirewallRuleset.render(config), to: file)
        // nft -f applies the whole file in one transaction: all of it or none of it.
        try await runner.run(Tool("nft", package: "nftables"), ["-f", file])
    }

    func applySSHKeys(_ config: NodeConfig) throws {
        let directory = path("/root/.ssh")
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        try AtomicFile.write(config.sshKeys.joined(separator: "\n") + "\n", to: directory + "/authorized_keys", mode: 0o600)
    }

    /// The files `render` writes: everything apply would write, nothing applied.
    public static func render(_ config: NodeConfig, mac: String?) -> [RenderedFile] {
        var files = NetworkFiles.render(config, mac: mac ?? "00:00:00:00:00:00")
        if mac == nil {
            files[0].content = files[0].content.replacingOccurrences(
                of: "MACAddress=00:00:00:00:00:00", with: "# the first wired NIC: its MAC is filled in at boot\nMACAddress=<first wired NIC>"
            )
        }
        files.append(RenderedFile(path: "/run/micromirror/nftables.nft", content: FirewallRuleset.render(config)))
        files.append(RenderedFile(path: "/etc/hostname", content: config.hostname + "\n"))
        files.append(RenderedFile(path: "/root/.ssh/authorized_keys", content: config.sshKeys.joined(separator: "\n") + "\n", mode: 0o600))
        return files
    }
}
