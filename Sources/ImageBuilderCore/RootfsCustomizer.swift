import Foundation
import MicromirrorKit
import SystemKit

/// Turns a copy of the cached base rootfs into the appliance: our programs, units, keyring,
/// recipes, mounts, and the image's identity. Runs on every build; takes seconds.
struct RootfsCustomizer {
    var definition: ImageDefinition
    var hardware: HardwareProfile
    var identity: ImageIdentity
    var binaries: [String: String]
    var trustedKeys: [Ed25519PublicKey]
    var recipesDirectory: String?
    var runner: CommandRunner

    func apply(to root: String) async throws {
        let fm = FileManager.default
        func write(_ text: String, _ path: String, mode: Int32 = 0o644) throws {
            try fm.createDirectory(atPath: root + (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try AtomicFile.write(text, to: root + path, mode: mode)
        }
        func install(_ source: String, _ path: String, mode: Int32) throws {
            guard let data = fm.contents(atPath: source) else {
                throw BuildError(stage: "customize", "cannot read \(source)")
            }
            try fm.createDirectory(atPath: root + (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try AtomicFile.write(Array(data), to: root + path, mode: mode)
        }

        for (name, source) in binaries.sorted(by: { $0.key < $1.key }) {
            try install(source, "/usr/bin/\(name)", mode: 0o755)
        }
        let base = (definition.path as NSString).deletingLastPathComponent
        for file in definition.files {
            let source = file.source.hasPrefix("/") ? file.source : base + "/" + file.source
            guard fm.fileExists(atPath: source) else {
                throw BuildError(stage: "customize", "\(definition.path): files: \(file.source) does not exist (looked for \(source))")
            }
            try install(source, file.target, mode: Int32(file.mode))
        }
        for key in trustedKeys {
            try write(String(decoding: try key.pem(), as: UTF8.self), NodePaths.keyring + "/\(key.keyID).pub")
        }
        if let recipesDirectory, let names = try? fm.contentsOfDirectory(atPath: recipesDirectory) {
            for name in names.sorted() where name.hasSuffix(".yaml") {
                try install(recipesDirectory + "/" + name, NodePaths.recipes + "/\(name)", mode: 0o644)
            }
        }
        try write(identity.json, NodePaths.imageIdentity)

        // os-release carries the image identity, as the BLS/os-release specs expect.
        let osRelease = root + "/usr/lib/os-release"
        var release = (try? String(contentsOfFile: osRelease, encoding: .utf8)) ?? ""
        release += "IMAGE_ID=\(identity.name)\nIMAGE_VERSION=\(identity.version)\n"
        try AtomicFile.write(release, to: osRelease)

        try write("micromirror\n", "/etc/hostname")
        try write(
            """
            # micromirror: partitions are found by GPT label, never by device name.
            PARTLABEL=\(DiskLayout.Label.esp)     /efi               vfat  umask=0077,nofail  0 2
            PARTLABEL=\(DiskLayout.Label.config)  \(NodePaths.standard.config) ext4  nodev,nosuid,noexec  0 2

            """,
            "/etc/fstab"
        )
        for directory in ["/efi", NodePaths.standard.data, NodePaths.standard.config] {
            try fm.createDirectory(atPath: root + directory, withIntermediateDirectories: true)
        }
        if !hardware.loadModules.isEmpty {
            try write(hardware.loadModules.joined(separator: "\n") + "\n", "/etc/modules-load.d/micromirror-hardware.conf")
        }
        if let seconds = hardware.watchdogSeconds {
            try write("[Manager]\nRuntimeWatchdogSec=\(seconds)s\nRebootWatchdogSec=2min\n", "/etc/systemd/system.conf.d/50-micromirror-watchdog.conf")
        }
        // sshd needs host keys; until firstboot keeps them on mm-config, make them at start.
        // Debian's unit runs `sshd -t` first, which fails without keys: replace the pre-start list.
        try write(
            "[Service]\nExecStartPre=\nExecStartPre=/usr/bin/ssh-keygen -A\nExecStartPre=/usr/sbin/sshd -t\n",
            "/etc/systemd/system/ssh.service.d/50-micromirror-hostkeys.conf"
        )

        for unit in definition.enableUnits {
            try await systemctl(root, "enable", unit)
        }
        for unit in definition.disableUnits {
            try await systemctl(root, "disable", unit)
        }
    }

    private func systemctl(_ root: String, _ verb: String, _ unit: String) async throws {
        do {
            try await runner.run(Tools.chroot, [root, "systemctl", verb, "--no-reload", unit])
        } catch let error as CommandError {
            throw BuildError(stage: "customize", "\(definition.path): units: cannot \(verb) \(unit): \(error.outputTail)")
        }
    }
}
