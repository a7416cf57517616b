import Foundation
import MicromirrorKit
import SystemKit

/// The kernel and initrd found in the rootfs's /boot.
struct BootFiles {
    var kernel: String
    var initrd: String
    var kernelVersion: String

    static func find(in root: String) throws -> BootFiles {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: root + "/boot")) ?? []
        let kernels = names.filter { $0.hasPrefix("vmlinuz-") }.sorted()
        guard let kernel = kernels.last else {
            throw BuildError(stage: "rootfs", "no kernel in \(root)/boot: the hardware profile must list a kernel package (e.g. linux-image-amd64)")
        }
        let version = String(kernel.dropFirst("vmlinuz-".count))
        let initrd = "initrd.img-\(version)"
        guard names.contains(initrd) else { throw BuildError(stage: "rootfs", "no \(initrd) in \(root)/boot") }
        return BootFiles(kernel: root + "/boot/" + kernel, initrd: root + "/boot/" + initrd, kernelVersion: version)
    }
}

/// mkfs.erofs of the customised tree: compressed, every timestamp SOURCE_DATE_EPOCH, seeded UUID.
struct ErofsWriter {
    var runner: CommandRunner

    func write(tree: String, to image: String, uuid: GUID, epoch: Int64) async throws {
        try await runner.run(
            Tools.mkfsErofs,
            [
                // lz4hc level 4: 40% faster than the default level for a root under 1% larger.
                "-zlz4hc,4", "-T", "\(epoch)", "-U", uuid.description, "--quiet",
                // The kernel and initrd live on the ESP; keeping them out of the root saves ~45 MiB.
                "--exclude-regex=^boot/(vmlinuz|initrd\\.img|System\\.map|config)-",
                image, tree,
            ]
        )
    }
}

/// The ESP: systemd-boot (also as the removable-media fallback path), loader.conf, and slot A's
/// kernel, initrd and BLS entry. Written with mtools; the build machine cannot mount vfat.
struct ESPWriter {
    var runner: CommandRunner
    var epoch: Int64

    struct Content {
        var bootloader: String
        var kernel: String
        var initrd: String
        var entry: BootEntry
        var loaderConf: String
    }

    func write(_ content: Content, size: Int64, to image: String, staging: String) async throws {
        let env = ["SOURCE_DATE_EPOCH": "\(epoch)", "MTOOLS_SKIP_CHECK": "1"]
        try? FileManager.default.removeItem(atPath: image)
        try await runner.run(
            Tools.mkfsVfat,
            // --invariant fixes every time- or random-based field (the volume id becomes 1234-ABCD;
            // the ESP is found by PARTLABEL, so it need not be unique).
            ["-C", "-F", "32", "-n", "MM-ESP", "--invariant", image, "\(size / 1024)"],
            environment: env
        )
        try FileManager.default.createDirectory(atPath: staging, withIntermediateDirectories: true)
        let slotDir = "/micromirror/\(content.entry.slot)"
        var files: [(String, String)] = [
            (content.bootloader, "/EFI/BOOT/BOOTX64.EFI"),
            (content.bootloader, "/EFI/systemd/systemd-bootx64.efi"),
            (content.kernel, "\(slotDir)/vmlinuz"),
            (content.initrd, "\(slotDir)/initrd.img"),
        ]
        let loader = staging + "/loader.conf"
        let entry = staging + "/" + content.entry.fileName
        try AtomicFile.write(content.loaderConf, to: loader)
        try AtomicFile.write(content.entry.text, to: entry)
        files += [(loader, "/loader/loader.conf"), (entry, "/loader/entries/\(content.entry.fileName)")]

        let directories = ["/EFI", "/EFI/BOOT", "/EFI/systemd", "/loader", "/loader/entries", "/micromirror", slotDir]
        try await runner.run(Tools.mmd, ["-i", image] + directories.map { "::" + $0 }, environment: env)
        for (source, target) in files {
            // mcopy -m keeps the source mtime: pin it so the FAT directory entries are reproducible.
            let staged = staging + "/stage-" + (target as NSString).lastPathComponent
            try? FileManager.default.removeItem(atPath: staged)
            try FileManager.default.copyItem(atPath: source, toPath: staged)
            try await runner.run(Tools.touch, ["-d", "@\(epoch)", staged])
            try await runner.run(Tools.mcopy, ["-m", "-o", "-i", image, staged, "::" + target], environment: env)
            try? FileManager.default.removeItem(atPath: staged)
        }
    }
}

/// The config partition: ext4, empty until `mm-image node write` puts the node file there.
struct ConfigWriter {
    var runner: CommandRunner

    func write(to image: String, size: Int64, uuid: GUID, hashSeed: GUID, epoch: Int64) async throws {
        try? FileManager.default.removeItem(atPath: image)
        let file = try RawFile.openForWriting(image, create: true, truncate: true)
        try file.truncate(to: size)
        try await runner.run(
            Tools.mkfsExt4,
            [
                "-q", "-F", "-L", DiskLayout.Label.config, "-U", uuid.description,
                "-E", "hash_seed=\(hashSeed),lazy_itable_init=0,root_owner=0:0", "-O", "^metadata_csum_seed",
                image,
            ],
            // e2fsprogs' own switch for a fixed timestamp in the superblock and inodes.
            environment: ["E2FSPROGS_FAKE_TIME": "\(epoch)"]
        )
    }
}
