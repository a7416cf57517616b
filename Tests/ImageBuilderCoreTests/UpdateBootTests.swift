import Foundation
import MicromirrorKit
import MicromirrorTestSupport
import SystemKit
import Testing

/// Over the air, for real, on one disk through a node's whole life of updates: releases built with
/// `mm-image build` and published with `mm-image publish`, served by `mm-node serve` in a private
/// network namespace, a node flashed with N booting under QEMU (TCG, OVMF, a persistent disk file,
/// the chipset watchdog armed). Power is cut at every step of the first update, the first boot of the
/// new slot freezes, a broken release falls back by itself, and the next good one is taken.
@Suite("Over-the-air updates in QEMU", .serialized)
struct UpdateBootTests {
    @Test(
        "N → N+1 through power cuts and a frozen trial boot; N+2 (serving broken) falls back and is never retried; N+3 is taken"
    )
    func lifecycle() async throws {
        let n = try await BuiltImage.shared.artifacts()
        let base = Int64(BuiltImage.sourceDateEpoch)!
        let (b1, b2, b3) = (base + 1, base + 2, base + 3)
        let dir = try await TestSupport.scratch("ota")
        // N+2 is a real build whose health gate cannot pass: its definition masks the server.
        let broken = dir + "/broken.yaml"
        let definition = try String(contentsOfFile: TestSupport.packageRoot + "/images/micromirror.yaml", encoding: .utf8)
        let brokenText = definition
            .replacingOccurrences(of: "    - mm-node-serve.service\n", with: "")
            .replacingOccurrences(of: "  mask:\n", with: "  mask:\n    - mm-node-serve.service\n")
            .replacingOccurrences(of: "source: files/", with: "source: \(TestSupport.packageRoot)/images/files/")
            .replacingOccurrences(of: "source: ../recipes/", with: "source: \(TestSupport.packageRoot)/recipes/")
        try #require(brokenText.contains("  mask:\n    - mm-node-serve.service\n") && !brokenText.contains("  enable:\n    - mm-node-serve"))
        try brokenText.write(toFile: broken, atomically: true, encoding: .utf8)
        async let built1 = BuiltImage.release(after: n, version: "0.1.1", buildNumber: b1)
        async let built2 = BuiltImage.release(after: n, version: "0.1.2", buildNumber: b2, image: broken)
        async let built3 = BuiltImage.release(after: n, version: "0.1.3", buildNumber: b3)
        let (next, bad, fixed) = try await (built1, built2, built3)

        let channel = dir + "/channel"
        let published = try await TestSupport.check(
            TestSupport.mmImage, ["publish", next.bundle, "--channel", channel, "--name", "stable", "--rollout", "100", "--key", n.privateKey]
        )
        #expect(published.stdout.contains("published build \(b1) (0.1.1"), "\(published.stdout)")

        let size = try #require(try FileManager.default.attributesOfItem(atPath: n.image)[.size] as? NSNumber).int64Value
        let image = try await TestSupport.copyImage(n.image, scratchName: "ota-disk", size: size + (2 << 30))
        try await TestSupport.check("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "mm-test", "-f", dir + "/key"])
        let pub = try String(contentsOfFile: dir + "/key.pub", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let example = try String(contentsOfFile: TestSupport.packageRoot + "/nodes/example.yaml", encoding: .utf8)
        let text = example
            .replacingOccurrences(
                of: "  channel: stable\n  maintenance-window: \"Tue 02:00-04:00\"   # UTC",
                with: "  channel: http://192.0.2.1:8080/stable.json\n  maintenance-window: any\n  check-interval: 1m"
            )
            .replacingOccurrences(of: "ssh-keys:\n", with: "ssh-keys:\n  - \(pub)\n")
            // Releases are announced on the namespace's broker (scripts/e2e-update.sh runs it).
            .replacingOccurrences(of: "  broker: mqtts://mqtt.fcix.net:8883\n", with: "  broker: mqtt://192.0.2.1:1883\n")
        try #require(text.contains("check-interval: 1m") && text.contains(pub) && text.contains("mqtt://192.0.2.1:1883"), "the example node file changed; adapt this test")
        let nodeFile = dir + "/node.yaml"
        try text.write(toFile: nodeFile, atomically: true, encoding: .utf8)
        try await TestSupport.check(TestSupport.mmImage, ["node", "write", image, nodeFile])

        // The guest is reached from inside the namespace, where the actions run.
        let ssh = "ssh -i \(dir)/key -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o ConnectTimeout=10 -o LogLevel=ERROR root@192.0.2.10"
        let name = { (bundle: String) in (bundle as NSString).lastPathComponent }
        // What the NOC does after each change to the channel: announce it, so the node checks at once.
        let announce = "mosquitto_pub -h 192.0.2.1 -q 1 -t micromirror/update/stable -m changed"
        let publish = { (bundle: String) in
            "sh:\(TestSupport.mmImage) publish \(bundle) --channel \(channel) --name stable --rollout 100 --key \(n.privateKey)"
        }
        let log = dir + "/serial.log"
        let result = try await TestSupport.run(
            TestSupport.packageRoot + "/scripts/e2e-update.sh",
            [
                image, channel, "--timeout", "3000", "--log", log,
                // Power cuts: during the download, during the slot write, right after the entry is written.
                "--at", "build=\(b1) channel=stable decision=install", "cut:20",
                "--at", "slot=b \\[NodeRuntimeCore\\] installing", "cut:8",
                "--at", "entry=micromirror-b\\+3.conf slot=b \\[NodeRuntimeCore\\] installed", "cut",
                // The first boot of the new slot freezes (PID 1 crashes) before its health gate: the watchdog resets it.
                "--at", "Started .*ssh\\.service", "sh:for i in $(seq 30); do \(ssh) 'kill -SEGV 1' && exit 0; sleep 2; done; exit 1",
                // Blessed on its second try. Bad input first: the index's signature altered, then an
                // index naming a bundle the server does not have; both refused before any download.
                "--at", "last=build \(b1) in slot b passed its health gate and is blessed",
                "sh:printf X | dd of=\(channel)/stable.json.sig bs=1 seek=3 conv=notrunc status=none && \(announce)",
                "--at", "error=signature: http://192.0.2.1:8080/stable.json is not signed by a trusted key",
                "\(publish(bad.bundle)) && mv \(channel)/\(name(bad.bundle)) \(dir)/held.mmb && \(announce)",
                // Then the next release, whose server is masked.
                "--at", "HTTP 404 \\(the channel names a bundle the server does not have\\)", "sh:mv \(dir)/held.mmb \(channel)/\(name(bad.bundle)) && \(announce)",
                "--at", "mm-node health: unhealthy", "sh:true",
                // Back on N+1 by itself; once it has declined N+2 at a poll, N+3 comes out.
                "--at", "build=\(b2) channel=stable decision=this build did not come up healthy here before", "\(publish(fixed.bundle)) && \(announce)",
                "--until", "micromirror-boot: slot=a .*build=\(b3) .*failed=",
                // Once the updater has recorded the blessing, the guest's writes (the ESP, the state on
                // mm-data) reach the disk file.
                "--then",
                "for i in $(seq 60); do \(ssh) \"grep -q 'build \(b3) in slot a passed its health gate' /srv/state/update.json\" && break; sleep 3; done; \(ssh) sync",
            ]
        )
        let console = String(decoding: (try? Data(contentsOf: URL(fileURLWithPath: log))) ?? Data(), as: UTF8.self).replacingOccurrences(of: "\r", with: "")
        #expect(result.status == 0, "the node did not get through to N+3:\n\(result.combined.suffix(3000))\n\(console.suffix(6000))")
        let boots = console.components(separatedBy: "\n").filter { $0.contains("micromirror-boot: slot=") }
        print("boots:\n" + boots.joined(separator: "\n"))
        // The announcements were heard: checks ran on them, not only at the one-minute polls.
        let pushed = console.components(separatedBy: "\n").filter { $0.contains("[NodeRuntimeCore] update check") && $0.contains("trigger=push") }
        #expect(!pushed.isEmpty, "no check was made on an MQTT announcement")

        // Every power cut came back up on slot a, serving, until slot b was ready.
        #expect(console.components(separatedBy: "[qemu-boot: power cut]").count == 4, "three power cuts")
        #expect(console.contains("resuming the download"), "the download cut by the power started over instead of resuming")
        #expect(console.contains("the install of build \(b1) was interrupted; it starts again"), "the cut slot write was not noticed")
        // A, A, A (three power cuts), B frozen and reset by the watchdog, B blessed, N+2 unhealthy once, back to B, N+3.
        let kernels = console.components(separatedBy: "Linux version ").count - 1
        #expect(kernels == 8, "\(kernels) boots, not 8: the frozen trial boot was not reset by the watchdog, or a boot was missed:\n\(boots)")
        #expect(console.contains("micromirror-boot: slot=b root=mm-root-b image=micromirror version=0.1.1 build=\(b1)"), "N+1 never came up")
        #expect(console.contains("mm-node health: unhealthy: mm-node-serve.service: mm-node-serve.service is masked"), "\(console.suffix(3000))")
        // Marked bad at once: one failing boot, not three.
        #expect(console.components(separatedBy: "slot a's entry is now micromirror-a+0-1.conf; rebooting into the other slot").count == 2, "\(console.suffix(3000))")
        #expect(console.contains("build=\(b2) [NodeRuntimeCore] this node rolled back a release before"), "the rollback was not reported")
        #expect(console.contains("micromirror-boot: slot=a root=mm-root-a image=micromirror version=0.1.3 build=\(b3)"))
        #expect(!boots.contains { $0.contains("build=\(b2)") }, "N+2 reached multi-user healthy:\n\(boots)")

        // The channel's log: N+1 resumed with a range request; N+2 fetched once, never again.
        let served = (try? String(contentsOfFile: channel + ".access.log", encoding: .utf8)) ?? ""
        #expect(served.contains("GET /\(name(next.bundle)) HTTP/1.1\" 206"), "no resumed download of N+1:\n\(served)")
        // (one 404 while the bundle was held back, then one download: none after the rollback)
        #expect(served.components(separatedBy: "GET /\(name(bad.bundle)) HTTP/1.1\" 200").count == 2, "N+2 was downloaded again after its rollback:\n\(served)")
        #expect(served.contains("GET /\(name(bad.bundle)) HTTP/1.1\" 404"), "\(served)")

        // On the disk afterwards: slot a blessed with N+3, slot b still N+1.
        let inspect = try await TestSupport.check(TestSupport.mmImage, ["inspect", image])
        #expect(inspect.stdout.contains("micromirror-a.conf") && inspect.stdout.contains("micromirror-b.conf"), "\(inspect.stdout)")
        #expect(!inspect.stdout.contains("micromirror-a+") && !inspect.stdout.contains("micromirror-b+"), "an entry is still counting:\n\(inspect.stdout)")
        // The node's own account, from mm-data (mounted writable so ext4 replays its journal).
        let gpt = try GPT.read(from: RawFile.openForReading(image))
        let data = try #require(gpt.partition(named: DiskLayout.Label.data))
        let loop = try await TestSupport.check(
            "losetup", ["--find", "--show", "--offset", "\(data.offsetInBytes)", "--sizelimit", "\(data.sizeInBytes)", image]
        ).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        defer { ToolRun.cleanUp("losetup", ["-d", loop]) }
        let mountpoint = try await TestSupport.scratch("ota-data")
        try await TestSupport.check("mount", ["-t", "ext4", "-o", "ro", loop, mountpoint])
        defer { ToolRun.cleanUp("umount", [mountpoint]) }
        let stateText = (try? String(contentsOfFile: mountpoint + "/state/update.json", encoding: .utf8)) ?? "(no /state/update.json on mm-data)"
        let state = try JSONDecoder().decode(StateFile.self, from: Data(stateText.utf8))
        #expect(state.phase == "idle" && state.rolledBack == [b2], "\(stateText)")
        let events = state.events.map(\.message)
        #expect(events.contains { $0.contains("build \(b2) did not come up healthy in slot a; fell back to slot b") }, "\(events)")
        #expect(events.last == "build \(b3) in slot a passed its health gate and is blessed", "\(events)")
        // The bad channel input was refused and recorded, and no install followed it.
        let refusedSignature = try #require(events.firstIndex { $0.hasPrefix("update failed: signature: http://192.0.2.1:8080/stable.json is not signed") }, "\(events)")
        let refusedMissing = try #require(events.firstIndex { $0.contains("HTTP 404 (the channel names a bundle the server does not have)") }, "\(events)")
        #expect(!events[refusedSignature + 1].hasPrefix("installing") && !events[refusedMissing + 1].hasPrefix("installing"), "\(events)")
        #expect(state.boot?.slot == "a" && state.boot?.buildNumber == b3)
    }

    /// The parts of `/srv/state/update.json` the test reads.
    struct StateFile: Decodable {
        struct Event: Decodable { var message: String }
        struct Boot: Decodable {
            var slot: String
            var buildNumber: Int64
        }
        var phase: String
        var rolledBack: [Int64]
        var events: [Event]
        var boot: Boot?
    }
}
