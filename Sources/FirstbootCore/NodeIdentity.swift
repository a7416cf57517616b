import Foundation
import Logging
import MicromirrorKit
import SystemKit

/// The node's identity, created once on first boot and kept on `mm-config` so it survives updates:
/// SSH host key, an Ed25519 node key (signs telemetry), and the machine id.
public struct NodeIdentity {
    public var state: String
    public var runner: CommandRunner

    public init(state: String, runner: CommandRunner) {
        self.state = state
        self.runner = runner
    }

    var directory: String { state + "/identity" }

    /// Creates whatever is missing; returns the names of what it made.
    public func ensure() async throws -> [String] {
        let fm = FileManager.default
        try fm.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        var made: [String] = []
        let hostKey = directory + "/ssh_host_ed25519_key"
        if !Self.isKey(hostKey) || !Self.isKey(hostKey + ".pub") {
            // ssh-keygen does not sync what it writes: made aside, then put in place durably, so a power
            // cut soon after the first boot cannot leave empty key files that sshd refuses forever.
            let aside = directory + "/.new-host-key"
            try? fm.removeItem(atPath: aside)
            try? fm.removeItem(atPath: aside + ".pub")
            try await runner.run(Tool("ssh-keygen", package: "openssh-client"), ["-q", "-t", "ed25519", "-N", "", "-C", "micromirror-node", "-f", aside])
            for (from, to, mode) in [(aside + ".pub", hostKey + ".pub", Int32(0o644)), (aside, hostKey, Int32(0o600))] {
                guard let bytes = fm.contents(atPath: from) else { throw FileError("read", from, code: EIO) }
                try AtomicFile.write(Array(bytes), to: to, mode: mode)
                try? fm.removeItem(atPath: from)
            }
            made.append("ssh host key")
        }
        let nodeKey = directory + "/node.key"
        if !Self.isKey(nodeKey) || !Self.isKey(directory + "/node.pub") {
            let key = try Ed25519PrivateKey.generate()
            try AtomicFile.write(try key.publicKey().pem(), to: directory + "/node.pub")
            try AtomicFile.write(try key.pem(), to: nodeKey, mode: 0o600)
            made.append("node key")
        }
        let machineID = directory + "/machine-id"
        if (try? String(contentsOfFile: machineID, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines).count != 32 {
            var generator = SystemRandomNumberGenerator()  // getrandom(2)
            let bytes = (0..<16).map { _ in UInt8.random(in: 0...255, using: &generator) }
            try AtomicFile.write(Hex.encode(bytes) + "\n", to: machineID)
            made.append("machine id")
        }
        return made
    }

    /// A key file that holds a PEM or OpenSSH key (not missing, not emptied by a power cut).
    static func isKey(_ path: String) -> Bool {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return false }
        return text.hasPrefix("-----BEGIN ") || text.hasPrefix("ssh-ed25519 ")
    }

    /// Puts the identity in place in the running system under `root` (every boot).
    public func install(root: String) throws {
        let fm = FileManager.default
        try fm.createDirectory(atPath: root + "/etc/ssh", withIntermediateDirectories: true)
        for name in ["ssh_host_ed25519_key", "ssh_host_ed25519_key.pub"] {
            guard let data = fm.contents(atPath: directory + "/" + name) else { continue }
            try AtomicFile.write(Array(data), to: root + "/etc/ssh/" + name, mode: name.hasSuffix(".pub") ? 0o644 : 0o600)
        }
        if let id = fm.contents(atPath: directory + "/machine-id") {
            try AtomicFile.write(Array(id), to: root + "/etc/machine-id", mode: 0o444)
        }
    }
}
