import Foundation
import Logging
import MicromirrorKit
import SystemKit

/// Builds the base root filesystem with mmdebstrap, cached by the hash of everything that goes
/// into it, so a rebuild that changes only our binaries skips it.
struct RootfsStage {
    var definition: ImageDefinition
    var hardware: HardwareProfile
    var sourceDateEpoch: Int64
    var cacheDirectory: String
    var runner: CommandRunner
    var progress: BuildProgress

    /// Bump when the hooks below change what they produce.
    static let recipeVersion = 4

    /// Where the overlay script is staged for mmdebstrap's `upload` hook.
    var overlayScriptPath: String { cacheDirectory + "/micromirror-overlay" }
    var machineIDScriptPath: String { cacheDirectory + "/micromirror-machine-id" }

    /// The packages mmdebstrap installs.
    var packages: [String] { definition.packages + hardware.packages.filter { !definition.packages.contains($0) } }

    /// Modules forced into the initramfs (ext4: the machine id is read from mm-config there).
    var initramfsModules: [String] { ["erofs", "overlay", "ext4"] + hardware.initramfsModules }

    /// Runs after the essential packages, before the kernel: the initramfs hook and the overlay
    /// script are in place when the kernel's postinst builds the initramfs.
    var essentialHooks: [String] {
        [
            "mkdir -p \"$1/etc/initramfs-tools/hooks\" \"$1/etc/initramfs-tools/scripts/local-bottom\"",
            "upload \(stagedHook) \(OverlayRootScript.hookPath)",
            "upload \(overlayScriptPath) \(OverlayRootScript.installPath)",
            "upload \(machineIDScriptPath) \(MachineIDScript.installPath)",
            "chmod 0755 \"$1\(OverlayRootScript.hookPath)\" \"$1\(OverlayRootScript.installPath)\" \"$1\(MachineIDScript.installPath)\"",
        ]
    }

    /// The hooks run after all packages, before the tree is cached. Deterministic given SOURCE_DATE_EPOCH.
    var hooks: [String] {
        [
            // Host keys are made per node at first boot, never baked into the image.
            "rm -f \"$1\"/etc/ssh/ssh_host_*",
            // The machine id is created on the node; an empty file marks the image as not yet booted.
            ": > \"$1/etc/machine-id\"",
            "rm -rf \"$1\"/var/log/apt \"$1\"/var/log/dpkg.log \"$1\"/var/log/alternatives.log \"$1\"/var/cache/ldconfig/aux-cache",
        ]
    }

    var stagedHook: String { cacheDirectory + "/micromirror-initramfs-hook" }

    /// Returns the cached rootfs directory, building it first if needed.
    func run() async throws -> (path: String, cached: Bool) {
        let sources = try definition.mirror ?? AptSources.fromHost(suite: definition.suite, components: definition.components)
        let key = cacheKey(sources: sources)
        let target = "\(cacheDirectory)/rootfs-\(key.prefix(16))"
        let stamp = target + "/.mm-rootfs-complete"
        if FileManager.default.fileExists(atPath: stamp) { return (target, true) }

        try FileManager.default.createDirectory(atPath: cacheDirectory, withIntermediateDirectories: true)
        let partial = target + ".partial"
        try? FileManager.default.removeItem(atPath: partial)
        try AtomicFile.write(OverlayRootScript.text, to: overlayScriptPath, mode: 0o755)
        try AtomicFile.write(MachineIDScript.text, to: machineIDScriptPath, mode: 0o755)
        try AtomicFile.write(OverlayRootScript.hook(modules: initramfsModules), to: stagedHook, mode: 0o755)
        let sourcesFile = "\(cacheDirectory)/sources-\(key.prefix(16)).sources"
        try AtomicFile.write(sources, to: sourcesFile)
        defer { try? FileManager.default.removeItem(atPath: sourcesFile) }

        var arguments = ["--variant=minbase", "--mode=root", "--format=directory", "--include=\(packages.joined(separator: ","))"]
        arguments += essentialHooks.map { "--essential-hook=\($0)" }
        arguments += hooks.map { "--customize-hook=\($0)" }
        arguments += [definition.suite, partial, definition.mirror == nil ? sourcesFile : definition.mirror!]
        do {
            try await runner.stream(Tools.mmdebstrap, arguments, environment: ["SOURCE_DATE_EPOCH": "\(sourceDateEpoch)"]) { line in
                progress.step(line)
            }
        } catch let error as CommandError {
            try? FileManager.default.removeItem(atPath: partial)
            throw explain(error)
        }
        try AtomicFile.write(key + "\n", to: partial + "/.mm-rootfs-complete")
        try? FileManager.default.removeItem(atPath: target)
        try FileManager.default.moveItem(atPath: partial, toPath: target)
        return (target, false)
    }

    /// The cache key: every input of the rootfs.
    func cacheKey(sources: String) -> String {
        let inputs = [
            "recipe=\(Self.recipeVersion)", "suite=\(definition.suite)", "sources=\(sources)",
            "packages=\(packages.joined(separator: ","))", "hooks=\(hooks.joined(separator: "\n"))",
            "essential=\((essentialHooks.joined(separator: "\n") as NSString).replacingOccurrences(of: cacheDirectory, with: "<cache>"))",
            "overlay=\(OverlayRootScript.text)", "machine-id=\(MachineIDScript.text)", "initramfs=\(OverlayRootScript.hook(modules: initramfsModules))",
            "epoch=\(sourceDateEpoch)",
        ]
        return SHA256Hasher.hex(of: Array(inputs.joined(separator: "\u{0}").utf8))
    }

    /// Turns apt's "Unable to locate package" into an error naming the package and where it was listed.
    func explain(_ error: CommandError) -> any Error {
        let pattern = "Unable to locate package "
        let missing = error.outputTail.split(separator: "\n").compactMap { line -> String? in
            guard let range = line.range(of: pattern) else { return nil }
            return String(line[range.upperBound...]).trimmingCharacters(in: .whitespaces)
        }
        guard !missing.isEmpty else { return BuildError(stage: "rootfs", "mmdebstrap failed: \(error)") }
        let places = Set(missing).sorted().map { name -> String in
            let file = definition.packages.contains(name) ? definition.path : hardware.path
            return "\"\(name)\" (listed in \(file))"
        }
        return BuildError(
            stage: "rootfs",
            "unknown package\(places.count == 1 ? "" : "s") \(places.joined(separator: ", ")): not in Debian \(definition.suite) (\(definition.components.joined(separator: ", "))); fix the package list"
        )
    }
}
