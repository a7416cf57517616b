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
    var sourceDateEpoch: Int64
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
        if let recipesDirectory {
            for name in try RecipeFiles.list(in: recipesDirectory) {
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
            # mm-data has no filesystem until mm-firstboot makes one on the first boot: mount it after
            # that (nofail: not before local-fs.target), and never fsck it before mm-firstboot ran.
            PARTLABEL=\(DiskLayout.Label.data)    \(NodePaths.standard.data)               ext4  noatime,nodev,nosuid,nofail,x-systemd.after=mm-firstboot.service  0 0
            # The persistent journal lives on mm-data; journald flushes into it once this is mounted.
            \(NodePaths.standard.journal)  /var/log/journal  none  bind,nofail,x-systemd.requires=mm-srv-layout.service,x-systemd.after=mm-srv-layout.service  0 0

            """,
            "/etc/fstab"
        )
        for directory in ["/efi", NodePaths.standard.data, NodePaths.standard.config] {
            try fm.createDirectory(atPath: root + directory, withIntermediateDirectories: true)
        }
        // mm-firstboot installs the NOC's keys here; its sandbox can only write a directory that exists.
        try fm.createDirectory(atPath: root + "/root/.ssh", withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        if !hardware.loadModules.isEmpty {
            try write(hardware.loadModules.joined(separator: "\n") + "\n", "/etc/modules-load.d/micromirror-hardware.conf")
        }
        if let seconds = hardware.watchdogSeconds {
            try write("[Manager]\nRuntimeWatchdogSec=\(seconds)s\nRebootWatchdogSec=2min\n", "/etc/systemd/system.conf.d/50-micromirror-watchdog.conf")
        }
        // sshd's only host key (ed25519) comes from mm-config through mm-firstboot, which runs
        // before ssh.service: no `ssh-keygen -A` making RSA and ECDSA keys nobody uses.

        // The root is read-only: the service users exist in the image, with fixed ids (sysusers.d).
        try await run(root, ["systemd-sysusers", "/usr/lib/sysusers.d/micromirror.conf"], what: "create the service users")
        try pinPasswordDates(root)

        for unit in definition.enableUnits {
            try await systemctl(root, "enable", unit)
        }
        for unit in definition.disableUnits {
            try await systemctl(root, "disable", unit)
        }
        for unit in definition.maskUnits {
            try await systemctl(root, "mask", unit)
        }
    }

    private func run(_ root: String, _ command: [String], what: String) async throws {
        do {
            try await runner.run(Tools.chroot, [root] + command)
        } catch let error as CommandError {
            throw BuildError(stage: "customize", "cannot \(what) (\(command.joined(separator: " "))): \(error.outputTail)")
        }
    }

    /// systemd-sysusers stamps today's date as the last password change in /etc/shadow; pin it to
    /// SOURCE_DATE_EPOCH so the image stays reproducible.
    private func pinPasswordDates(_ root: String) throws {
        let path = root + "/etc/shadow"
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return }
        let day = "\(sourceDateEpoch / 86400)"
        let pinned = text.split(separator: "\n", omittingEmptySubsequences: false).map { line -> String in
            var fields = line.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
            guard fields.count > 2, ["mirror", "mm-serve"].contains(fields[0]) else { return String(line) }
            fields[2] = day
            return fields.joined(separator: ":")
        }
        // In place: /etc/shadow keeps its owner, group (shadow) and mode.
        guard let handle = FileHandle(forWritingAtPath: path) else { throw BuildError(stage: "customize", "cannot open \(path) for writing") }
        defer { try? handle.close() }
        try handle.truncate(atOffset: 0)
        try handle.write(contentsOf: Data(pinned.joined(separator: "\n").utf8))
    }

    private func systemctl(_ root: String, _ verb: String, _ unit: String) async throws {
        do {
            try await runner.run(Tools.chroot, [root, "systemctl", verb, "--no-reload", unit])
        } catch let error as CommandError {
            throw BuildError(stage: "customize", "\(definition.path): units: cannot \(verb) \(unit): \(error.outputTail)")
        }
    }
}
