import Foundation
import MicromirrorKit
import MicromirrorTestSupport
import SystemKit
import Testing

/// Over the air, for real: release N+1 built with `mm-image build` and published with
/// `mm-image publish`, served by `mm-node serve` in a private network namespace; a node flashed with
/// N boots under QEMU (TCG, OVMF, a persistent disk file), finds the release on its channel, writes
/// slot B, reboots into it, passes its health gate and blesses it.
@Suite("Over-the-air update in QEMU", .serialized)
struct UpdateBootTests {
    @Test("N → N+1: downloaded from the channel, written to slot B, booted, healthy, blessed; inspect and the node's state agree")
    func update() async throws {
        let n = try await BuiltImage.shared.artifacts()
        let nextBuild = Int64(BuiltImage.sourceDateEpoch)! + 1
        let next = try await BuiltImage.release(after: n, version: "0.1.1", buildNumber: nextBuild)
        let dir = try await TestSupport.scratch("ota")
        let channel = dir + "/channel"
        let published = try await TestSupport.check(
            TestSupport.mmImage, ["publish", next.bundle, "--channel", channel, "--name", "stable", "--rollout", "100", "--key", n.privateKey]
        )
        #expect(published.stdout.contains("published build \(nextBuild) (0.1.1"), "\(published.stdout)")

        let size = try #require(try FileManager.default.attributesOfItem(atPath: n.image)[.size] as? NSNumber).int64Value
        let image = try await TestSupport.copyImage(n.image, scratchName: "ota-disk", size: size + (2 << 30))
        let nodeFile = dir + "/node.yaml"
        let example = try String(contentsOfFile: TestSupport.packageRoot + "/nodes/example.yaml", encoding: .utf8)
        let text = example.replacingOccurrences(
            of: "  channel: stable\n  maintenance-window: \"Tue 02:00-04:00\"   # UTC",
            with: "  channel: http://192.0.2.1:8080/stable.json\n  maintenance-window: any\n  check-interval: 1m"
        )
        try #require(text != example, "the example node file's update section changed; adapt this test")
        try text.write(toFile: nodeFile, atomically: true, encoding: .utf8)
        try await TestSupport.check(TestSupport.mmImage, ["node", "write", image, nodeFile])

        let log = dir + "/serial.log"
        let result = try await TestSupport.run(
            TestSupport.packageRoot + "/scripts/e2e-update.sh",
            // The boot line comes once slot b is blessed; the wait lets the guest's page cache reach
            // the disk file (vfat writes back within 30 s) before QEMU is stopped.
            [image, channel, "--until", "micromirror-boot: slot=b .*build=\(nextBuild) .*failed=", "--timeout", "1800", "--log", log, "--then", "sleep 45"]
        )
        let console = String(decoding: (try? Data(contentsOf: URL(fileURLWithPath: log))) ?? Data(), as: UTF8.self)
        #expect(result.status == 0, "the node did not come up on slot b:\n\(result.combined.suffix(3000))\n\(console.suffix(6000))")
        #expect(console.contains("micromirror-boot: slot=a root=mm-root-a image=micromirror version=0.1.0"), "the first boot was not slot a")
        #expect(console.contains("micromirror-boot: slot=b root=mm-root-b image=micromirror version=0.1.1 build=\(nextBuild)"))
        #expect(console.contains("failed=none"), "units failed on the new slot:\n\(console.suffix(3000))")
        #expect(console.contains("mm-node health: healthy"), "the health gate did not pass")

        // On the disk afterwards: both entries, slot b's blessed (no try counter left in its name).
        let inspect = try await TestSupport.check(TestSupport.mmImage, ["inspect", image])
        #expect(inspect.stdout.contains("micromirror-b.conf") && inspect.stdout.contains("micromirror-a.conf"), "\(inspect.stdout)")
        #expect(!inspect.stdout.contains("micromirror-b+"), "slot b was not blessed:\n\(inspect.stdout)")
        // The node's own account, from mm-data.
        let gpt = try GPT.read(from: RawFile.openForReading(image))
        let data = try #require(gpt.partition(named: DiskLayout.Label.data))
        // Mounted from a writable loop device, so ext4 replays its journal (QEMU was stopped, not shut down).
        let loop = try await TestSupport.check(
            "losetup", ["--find", "--show", "--offset", "\(data.offsetInBytes)", "--sizelimit", "\(data.sizeInBytes)", image]
        ).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        defer { ToolRun.cleanUp("losetup", ["-d", loop]) }
        let mountpoint = try await TestSupport.scratch("ota-data")
        try await TestSupport.check("mount", ["-t", "ext4", "-o", "ro", loop, mountpoint])
        defer { ToolRun.cleanUp("umount", [mountpoint]) }
        let state = (try? String(contentsOfFile: mountpoint + "/state/update.json", encoding: .utf8)) ?? "(no /state/update.json on mm-data)"
        #expect(state.contains("\"phase\" : \"idle\"") && state.contains("passed its health gate and is blessed"), "\(state)")
        #expect(state.contains("verified on the disk"), "\(state)")
        let served = (try? String(contentsOfFile: channel + ".access.log", encoding: .utf8)) ?? ""
        #expect(served.contains("GET /stable.json") && served.contains("GET /\((next.bundle as NSString).lastPathComponent) HTTP/1.1\" 200"), "\(served)")
    }
}
