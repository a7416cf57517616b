import Foundation
import MicromirrorKit
import SystemKit

/// The read-only root filesystem an image carries, seen from the NOC's workstation: slot A's erofs
/// (where a flashed disk boots first), or slot B's when A holds none, through a read-only loop
/// device over just that partition. Needs root (loop devices).
struct ImageRoot: Sendable {
    var runner: CommandRunner
    static let losetup = Tool("losetup", package: "mount")
    static let mount = Tool("mount", package: "mount")
    static let umount = Tool("umount", package: "mount")

    /// Runs `body` with a read-only loop device holding the root of the image on `target`.
    func withDevice<T: Sendable>(onDisk target: String, _ body: (String) async throws -> T) async throws -> T {
        let gpt = try GPT.read(from: try RawFile.openForReading(target))
        try CommandRunner.require([Self.losetup])
        var tried: [String] = []
        for label in [DiskLayout.Label.rootA, DiskLayout.Label.rootB] {
            guard let partition = gpt.partition(named: label) else { continue }
            let probe = try BlockProbe(path: target, offset: partition.offsetInBytes, length: partition.sizeInBytes).superblocks()
            guard probe.type == "erofs" else {
                tried.append("\(label) holds \(probe.type ?? "no filesystem")")
                continue
            }
            let device = try await runner.run(
                Self.losetup, ["--find", "--show", "--read-only", "--offset", "\(partition.offsetInBytes)", "--sizelimit", "\(partition.sizeInBytes)", target]
            ).trimmingCharacters(in: .whitespacesAndNewlines)
            defer { Self.detach(device) }
            return try await body(device)
        }
        throw BuildError(stage: "image root", "\(target) has no image root to read (\(tried.joined(separator: ", ")))")
    }

    /// Runs `body` with the image's root mounted read-only at a scratch directory.
    func withMounted<T: Sendable>(onDisk target: String, _ body: (String) async throws -> T) async throws -> T {
        try CommandRunner.require([Self.mount, Self.umount])
        return try await withDevice(onDisk: target) { device in
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("mm-image-root-\(UUID().uuidString)").path
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: false)
            defer { try? FileManager.default.removeItem(atPath: directory) }
            try await runner.run(Self.mount, ["-t", "erofs", "-o", "ro,nodev,nosuid,noexec", device, directory])
            do {
                let result = try await body(directory)
                try await runner.run(Self.umount, [directory])
                return result
            } catch {
                _ = try? await runner.run(Self.umount, [directory])
                throw error
            }
        }
    }

    /// Detaches a loop device, ignoring failure (it is only a scratch, read-only view of a partition).
    static func detach(_ device: String) {
        guard device.hasPrefix("/dev/loop"), let tool = losetup.locate() else { return }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: tool)
        process.arguments = ["-d", device]
        guard (try? process.run()) != nil else { return }
        process.waitUntilExit()
    }
}

/// The keys an image trusts (`/usr/share/micromirror/keyring` in its root). Checking an image's
/// signature against them proves the image is whole and signed by the key it names, not who
/// built it: `mm-image flash` without `--pubkey` says so and prints the key IDs to compare.
public struct ImageKeyring: Sendable {
    public var runner: CommandRunner

    public init(runner: CommandRunner) { self.runner = runner }

    /// The keyring inside the image on `target`; each member's source names the image and key ID.
    public func keyring(onDisk target: String) async throws -> Keyring {
        try await ImageRoot(runner: runner).withMounted(onDisk: target) { root in
            let directory = root + NodePaths.keyring
            let loaded: Keyring
            do { loaded = try Keyring.load(directory: directory) } catch {
                throw BuildError(stage: "keyring", "the image \(target) carries no keyring at \(NodePaths.keyring): \(error)")
            }
            return Keyring(members: loaded.members.map {
                Keyring.Member(source: "the keyring inside \(target) (key \($0.key.keyID))", key: $0.key)
            })
        }
    }
}
