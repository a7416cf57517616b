import Foundation
import MicromirrorKit
import MicromirrorTestSupport
import Testing

/// The fleet's image: the HP T620 profile builds (with non-free firmware) and carries what the
/// hardware needs, and no serial console.
@Suite("HP T620 image")
struct T620BuildTests {
    @Test("builds with firmware-realtek, microcode, the watchdog and a screen console")
    func t620() async throws {
        // Reuse the fixture's key; a separate cache, since the package set differs.
        let fixture = try await BuiltImage.shared.artifacts()
        let work = try await TestSupport.scratch("t620")
        let result = try await TestSupport.run(
            TestSupport.mmImage,
            [
                "build", "--image", TestSupport.packageRoot + "/images/micromirror.yaml",
                "--hardware", TestSupport.packageRoot + "/hardware/hp-t620.yaml", "--key", fixture.privateKey,
                "--out", work + "/out", "--cache", work + "/cache", "--binaries", TestSupport.binaries,
            ],
            environment: ["SOURCE_DATE_EPOCH": BuiltImage.sourceDateEpoch]
        )
        #expect(result.status == 0, "\(result.combined.suffix(4000))")
        let dir = work + "/out/micromirror-hp-t620-0.1.0"
        let image = dir + "/micromirror-hp-t620-0.1.0.img"
        let manifest = try Manifest.parse(Array(try Data(contentsOf: URL(fileURLWithPath: dir + "/manifest.json"))), source: "manifest")
        #expect(manifest.hardware == "hp-t620")
        #expect(manifest.kernelCommandLine.contains("console=tty0"))
        #expect(!manifest.kernelCommandLine.contains("ttyS0"))
        let root = try #require(manifest.partitions.first { $0.label == "mm-root-a" })
        try await TestSupport.withLoopDevice(image, offset: root.offset, length: root.size) { device in
            let mountpoint = try await TestSupport.scratch("t620-mount")
            try await TestSupport.check("mount", ["-t", "erofs", "-o", "ro", device, mountpoint])
            defer { ToolRun.cleanUp("umount", [mountpoint]) }
            let firmware = (try? FileManager.default.contentsOfDirectory(atPath: mountpoint + "/lib/firmware/rtl_nic")) ?? []
            #expect(firmware.contains { $0.hasPrefix("rtl8168") }, "r8169 firmware missing: \(firmware.prefix(5))")
            #expect(FileManager.default.fileExists(atPath: mountpoint + "/lib/firmware/amd-ucode"), "amd64-microcode missing")
            let modules = try String(contentsOfFile: mountpoint + "/etc/modules-load.d/micromirror-hardware.conf", encoding: .utf8)
            #expect(modules.contains("sp5100_tco"))
            let watchdog = try String(contentsOfFile: mountpoint + "/etc/systemd/system.conf.d/50-micromirror-watchdog.conf", encoding: .utf8)
            #expect(watchdog.contains("RuntimeWatchdogSec=30s"))
        }
        // The initramfs on the ESP carries the disk and NIC drivers and erofs.
        let esp = try #require(manifest.partitions.first { $0.label == "mm-esp" })
        let modules = try await TestSupport.initramfsListing(image: image, espOffset: esp.offset)
        for module in ["r8169.ko", "ahci.ko", "erofs.ko", "overlay.ko"] {
            #expect(modules.contains(module), "\(module) missing from the T620 initramfs")
        }
        let verify = try await TestSupport.run(TestSupport.mmImage, ["verify", image, "--pubkey", fixture.publicKey])
        #expect(verify.status == 0, "\(verify.combined)")
    }
}
