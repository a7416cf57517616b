import Foundation
import MicromirrorKit
import SystemKit

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
