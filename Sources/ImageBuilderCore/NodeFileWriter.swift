import Foundation
import Logging
import MicromirrorKit
import SystemKit

/// Writes a validated node file into the `mm-config` partition of a disk image or a disk, without
/// mounting it: debugfs edits the ext4 at the partition's offset. The file is read back and
/// compared, so a write that did not land is an error, not a surprise at the sponsor's site.
public struct NodeFileWriter {
    public var runner: CommandRunner
    static let debugfs = Tool("debugfs", package: "e2fsprogs")
    static let name = "node.yaml"

    public init(logger: Logger) { self.runner = CommandRunner(logger: logger) }

    /// Validates `nodeFile` (throws `ConfigError` listing every problem, and writes nothing), then writes it.
    /// Every project must have a sync recipe in the image on `target`; when the image's cannot be
    /// read (no loop devices: not root), in `recipes` (the repository's), and with neither the
    /// write is refused.
    @discardableResult
    public func write(nodeFile: String, to target: String, recipes: String? = nil, reportMirror: String? = nil) async throws -> NodeConfig {
        let config = try NodeConfig.load(path: nodeFile)
        if let reportMirror {
            // Checked before anything is written, like the node file.
            let text: String
            do { text = try String(contentsOfFile: reportMirror, encoding: .utf8) } catch {
                throw BuildError(stage: "node write", "cannot read \(reportMirror): \(error.localizedDescription)")
            }
            _ = try MirrorManagerCheckin.parse(text, file: reportMirror)
        }
        let known: Set<String>
        let source: String
        do {
            known = try await ImageRecipes(logger: runner.logger).projects(onDisk: target)
            source = "the image on \(target)"
        } catch {
            guard let recipes else {
                throw BuildError(
                    stage: "node write",
                    "cannot read which projects the image on \(target) has recipes for (\(error)); run as root, or give --recipes DIR (the recipes the image was built with)"
                )
            }
            runner.logger.warning("the image's recipes cannot be read; checking against a directory", metadata: ["why": "\(error)", "recipes": "\(recipes)"])
            known = try ImageRecipes.projects(inDirectory: recipes)
            source = recipes
        }
        let problems = ImageRecipes.problems(config, file: nodeFile, known: known, source: source)
        guard problems.isEmpty else { throw ConfigError(problems: problems) }
        try await place(nodeFile: nodeFile, reportMirror: reportMirror, on: target)
        return config
    }

    /// Puts a node file (and a `report_mirror.conf`) already checked by the caller into
    /// `mm-config` on `target`, each root-only, and reads each back.
    public func place(nodeFile: String, reportMirror: String? = nil, on target: String) async throws {
        let device = try configDevice(target)
        try CommandRunner.require([Self.debugfs])
        _ = try? await runner.run(Self.debugfs, ["-w", "-R", "rm \(Self.name)", device])
        try await runner.run(Self.debugfs, ["-w", "-R", "write \(nodeFile) \(Self.name)", device])
        try await runner.run(Self.debugfs, ["-w", "-R", "set_inode_field \(Self.name) mode 0100600", device])
        try await verify(nodeFile, as: Self.name, on: device, target: target)
        if let reportMirror {
            // MirrorManager's site password: root-only on mm-config, as the node file is.
            _ = try? await runner.run(Self.debugfs, ["-w", "-R", "rm \(Self.reportMirrorName)", device])
            try await runner.run(Self.debugfs, ["-w", "-R", "write \(reportMirror) \(Self.reportMirrorName)", device])
            try await runner.run(Self.debugfs, ["-w", "-R", "set_inode_field \(Self.reportMirrorName) mode 0100600", device])
            try await verify(reportMirror, as: Self.reportMirrorName, on: device, target: target)
        }
    }

    /// Puts a node's watchtower credential from the fleet CA on mm-config of `target`: its identity
    /// key (`identity/node.key`, root-only, and `node.pub`; the first boot keeps them instead of
    /// making its own) and `credential/node.crt` and `ca.crt`. Each is read back.
    public func placeCredential(key: Ed25519PrivateKey, certificate: X509Certificate, authority: X509Certificate, on target: String) async throws {
        let device = try configDevice(target)
        // One per drive (drives are flashed at once); a path without spaces: debugfs splits its commands on them.
        let scratch = NSTemporaryDirectory() + "mm-credential-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let files: [(directory: String, name: String, bytes: [UInt8], mode: String)] = [
            ("identity", "node.key", try key.pem(), "0100600"), ("identity", "node.pub", try key.publicKey().pem(), "0100644"),
            ("credential", "node.crt", try certificate.pem(), "0100644"), ("credential", "ca.crt", try authority.pem(), "0100644"),
        ]
        var commands = ["mkdir identity", "set_inode_field identity mode 040700", "mkdir credential", "set_inode_field credential mode 040755"]
        for file in files {
            let local = scratch + "/" + file.name
            try AtomicFile.write(file.bytes, to: local, mode: 0o600)
            // debugfs writes into its current directory, and will not replace a file.
            commands += ["cd /\(file.directory)", "rm \(file.name)", "write \(local) \(file.name)", "set_inode_field \(file.name) mode \(file.mode)"]
        }
        try AtomicFile.write(commands.joined(separator: "\n") + "\n", to: scratch + "/commands", mode: 0o600)
        try CommandRunner.require([Self.debugfs])
        // debugfs goes on past a failing command (mkdir of a directory already there, rm of a missing file): the read-back decides.
        _ = try? await runner.run(Self.debugfs, ["-w", "-f", scratch + "/commands", device])
        for file in files {
            try await verify(scratch + "/" + file.name, as: file.directory + "/" + file.name, on: device, target: target)
        }
    }

    /// `debugfs`'s name for mm-config on `target` (its offset in a disk or image), once it is
    /// found and holds ext4.
    private func configDevice(_ target: String) throws -> String {
        let file = try RawFile.openForReading(target)
        let gpt: GPT
        do { gpt = try GPT.read(from: file) } catch {
            throw BuildError(stage: "node write", "\(target): \(error); is this a micromirror disk?")
        }
        guard let partition = gpt.partition(named: DiskLayout.Label.config) else {
            throw BuildError(stage: "node write", "\(target) has no \(DiskLayout.Label.config) partition")
        }
        let probe = try BlockProbe(path: target, offset: partition.offsetInBytes, length: partition.sizeInBytes).superblocks()
        guard probe.type == "ext4" else {
            throw BuildError(stage: "node write", "\(DiskLayout.Label.config) on \(target) holds \(probe.type ?? "no filesystem"), expected ext4")
        }
        return "\(target)?offset=\(partition.offsetInBytes)"
    }

    /// `report_mirror.conf` on mm-config: Fedora's MirrorManager check-in (`mm-node report-mirror`).
    static let reportMirrorName = "report_mirror.conf"

    /// Reads `name` back from the partition and compares it with `file`.
    private func verify(_ file: String, as name: String, on device: String, target: String) async throws {
        let back = try await runner.run(Self.debugfs, ["-R", "cat \(name)", device])
        let original = try String(contentsOfFile: file, encoding: .utf8)
        guard back == original else {
            throw BuildError(stage: "node write", "\(name) read back from \(target) differs from \(file); the write did not land")
        }
    }

    /// Reads the node file back from a disk image or disk (nil when there is none).
    public func read(from target: String) async throws -> String? {
        let file = try RawFile.openForReading(target)
        let gpt = try GPT.read(from: file)
        guard let partition = gpt.partition(named: DiskLayout.Label.config) else { return nil }
        let text = try await runner.run(Self.debugfs, ["-R", "cat \(Self.name)", "\(target)?offset=\(partition.offsetInBytes)"])
        return text.isEmpty ? nil : text
    }
}
