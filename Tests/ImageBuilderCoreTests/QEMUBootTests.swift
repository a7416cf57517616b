import Foundation
import MicromirrorKit
import MicromirrorTestSupport
import Testing

/// The real image boots under QEMU (TCG) + OVMF through systemd-boot to multi-user, and reports
/// on its serial console which slot it booted and which units failed.
@Suite("QEMU boot", .serialized)
struct QEMUBootTests {
    /// A sparse copy of the fixture image, `growBy` bytes larger (a bigger SSD).
    static func copyImage(_ a: BuiltImage.Artifacts, growBy: Int64 = 0) async throws -> String {
        let size = try #require(try FileManager.default.attributesOfItem(atPath: a.image)[.size] as? NSNumber).int64Value
        return try await TestSupport.copyImage(a.image, scratchName: "boot", size: growBy > 0 ? size + growBy : nil)
    }

    static func boot(_ image: String, expectFailed: String = "none", mac: String? = "52:54:00:12:34:56", then: String? = nil) async throws -> (TestSupport.Output, String) {
        let log = (image as NSString).deletingLastPathComponent + "/serial.log"
        var args = [image, "--expect-slot", "a", "--expect-failed", expectFailed, "--timeout", "600", "--log", log]
        if let then { args += ["--then", then] }
        if let mac { args += ["--nic-mac", mac] }
        let result = try await TestSupport.run(TestSupport.packageRoot + "/scripts/qemu-boot.sh", args)
        // The firmware writes bytes that are not UTF-8: decode leniently.
        let console = String(decoding: (try? Data(contentsOf: URL(fileURLWithPath: log))) ?? Data(), as: UTF8.self)
        return (result, console)
    }

    @Test("flashed with the example node file, the image boots slot A to multi-user with no failed units")
    func bootsSlotA() async throws {
        let a = try await BuiltImage.shared.artifacts()
        let image = try await Self.copyImage(a, growBy: 1 << 30)
        try await TestSupport.check(TestSupport.mmImage, ["node", "write", image, TestSupport.packageRoot + "/nodes/example.yaml"])
        let (result, console) = try await Self.boot(image)
        #expect(result.status == 0, "boot failed:\n\(result.combined.suffix(4000))")
        #expect(console.contains("micromirror: tmpfs overlay on the read-only root"))
        #expect(console.contains("micromirror-boot: slot=a root=mm-root-a image=micromirror version=0.1.0 build=\(BuiltImage.sourceDateEpoch) hardware=qemu-x86_64"))
        #expect(console.contains("mm-firstboot: applied example-isp.mm.fcix.net"), "firstboot did not apply the node file")
        #expect(console.contains("tcp=bbr qdisc=fq_codel firstboot=active failed=none"), "the mirror's sysctls are not in effect")
        #expect(console.contains("grew mm-data"), "first boot did not grow mm-data into the larger disk")
        #expect(console.contains("created ssh host key, node key, machine id"))
    }

    @Test("on a tap bridged in a test namespace, the guest answers on its static IPv4 and IPv6 with CS1 replies")
    func reachableWithCS1() async throws {
        let a = try await BuiltImage.shared.artifacts()
        let image = try await Self.copyImage(a)
        try await TestSupport.check(TestSupport.mmImage, ["node", "write", image, TestSupport.packageRoot + "/nodes/example.yaml"])
        let result = try await TestSupport.run(TestSupport.packageRoot + "/scripts/e2e-network.sh", [image, "--expect-dscp", "cs1"])
        #expect(result.status == 0, "e2e failed:\n\(result.combined.suffix(4000))")
        #expect(result.stdout.contains("IP (tos 0x20"), "no CS1-marked IPv4 reply captured")
        #expect(result.stdout.contains("IP6 (class 0x20"), "no CS1-marked IPv6 reply captured")
    }

    @Test("with a broken node file the console says what is wrong")
    func brokenNodeFile() async throws {
        let a = try await BuiltImage.shared.artifacts()
        let image = try await Self.copyImage(a)
        // Bypass `mm-image node write` (it refuses invalid files) to put a broken file on the disk.
        let manifest = try Manifest.parse(Array(try Data(contentsOf: URL(fileURLWithPath: a.manifest))), source: a.manifest)
        let config = try #require(manifest.partitions.first { $0.label == "mm-config" })
        let broken = (image as NSString).deletingLastPathComponent + "/node.yaml"
        let text = try String(contentsOfFile: TestSupport.packageRoot + "/nodes/example.yaml", encoding: .utf8)
            .replacingOccurrences(of: "192.0.2.10/24", with: "192.0.2.10/99")
        try text.write(toFile: broken, atomically: true, encoding: .utf8)
        try await TestSupport.check("debugfs", ["-w", "-R", "write \(broken) node.yaml", "\(image)?offset=\(config.offset)"])
        // Give getty a few seconds after multi-user to print the login banner with our report.
        let (result, console) = try await Self.boot(image, expectFailed: "mm-firstboot.service", then: "sleep 10")
        #expect(result.status == 0, "boot failed:\n\(result.combined.suffix(4000))")
        #expect(console.contains("PROBLEM: /var/lib/mm-config/node.yaml:"), "the console does not show the problem")
        #expect(console.contains("network.ipv4.address: prefix /99 is out of range for IPv4"))
        #expect(console.contains("NODE FILE PROBLEMS"), "the login banner does not show the problem")
    }
}
