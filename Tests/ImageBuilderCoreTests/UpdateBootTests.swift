import Foundation
import MicromirrorKit
import MicromirrorTestSupport
import SystemKit
import Testing

/// Over the air, for real, on one disk through a node's whole life of updates: releases built with
/// `mm-image build` and published with `mm-image publish`, served by `mm-node serve` in a private
/// network namespace, a node flashed with N booting under QEMU (TCG, OVMF, a persistent disk file,
/// the chipset watchdog armed), releases announced over MQTT on a broker there. Power is cut at every
/// step of the first update, bad channel input is refused, a broken release freezes once, fails its
/// health gate and falls back by itself, and the next good one is taken.
@Suite("Over-the-air updates in QEMU", .serialized)
struct UpdateBootTests {
    @Test(
        "N → N+1 through four power cuts; ten kinds of bad input refused, slot a unchanged; N+2 freezes, then fails its health gate, falls back and is never retried; N+3 is taken"
    )
    func lifecycle() async throws {
        let n = try await BuiltImage.shared.artifacts()
        let base = Int64(BuiltImage.sourceDateEpoch)!
        let (b1, b2, b3) = (base + 1, base + 2, base + 3)
        let dir = try await TestSupport.scratch("ota")
        // N+2 is a real build whose health gate cannot pass: its definition masks the server. Its first
        // try also freezes: a unit crashes PID 1 while the entry's counter (systemd-boot renames it
        // before each try) says one try is done, so the watchdog resets it.
        let freeze = dir + "/mm-test-freeze.service"
        try """
            [Unit]
            Description=test only: a frozen trial boot (PID 1 crashes) on this release's first try
            RequiresMountsFor=/efi
            Before=mm-node-health.service
            [Service]
            Type=oneshot
            ExecStart=/bin/sh -c 'if ls /efi/loader/entries | grep -Fq +2-1.conf; then echo "mm-test-freeze: crashing PID 1" > /dev/kmsg; kill -SEGV 1; fi'
            [Install]
            WantedBy=multi-user.target

            """.write(toFile: freeze, atomically: true, encoding: .utf8)
        let broken = dir + "/broken.yaml"
        let definition = try String(contentsOfFile: TestSupport.packageRoot + "/images/micromirror.yaml", encoding: .utf8)
        let brokenText = definition
            .replacingOccurrences(of: "    - mm-node-serve.service\n", with: "    - mm-test-freeze.service\n")
            .replacingOccurrences(of: "  mask:\n", with: "  mask:\n    - mm-node-serve.service\n")
            .replacingOccurrences(of: "source: files/", with: "source: \(TestSupport.packageRoot)/images/files/")
            .replacingOccurrences(of: "\nfiles:\n", with: "\nfiles:\n  - source: \(freeze)\n    target: /usr/lib/systemd/system/mm-test-freeze.service\n")
        try #require(brokenText.contains("  mask:\n    - mm-node-serve.service\n") && !brokenText.contains("  enable:\n    - mm-node-serve"))
        try #require(brokenText.contains("target: /usr/lib/systemd/system/mm-test-freeze.service") && brokenText.contains("    - mm-test-freeze.service\n"))
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
        let publishing = { (bundle: String, directory: String) in
            "\(TestSupport.mmImage) publish \(bundle) --channel \(directory) --name stable --rollout 100 --key \(n.privateKey)"
        }
        let publish = { (bundle: String) in "sh:" + publishing(bundle, channel) }
        // Slot a (N's, the inactive one) through all the bad input: its root as flashed, from N's manifest.
        let manifestN = try Manifest.parse(Array(try Data(contentsOf: URL(fileURLWithPath: n.manifest))), source: n.manifest)
        let rootA = try #require(manifestN.partitions.first { $0.label == DiskLayout.Label.rootA })
        // N+2 as the server holds it, to be tampered with; and a script that signs the index again for
        // whatever is there now (a careless or compromised publisher holding the key), so the index
        // names the changed bytes exactly and only the bundle's own checks can catch them.
        let served = channel + "/" + name(bad.bundle)
        let resign = dir + "/resign.sh"
        try #"""
            #!/bin/sh
            set -e
            index=\#(channel)/stable.json
            sum=$(sha256sum \#(served) | cut -c1-64)
            size=$(stat -c %s \#(served))
            sed -i -e "s/\"sha256\" : \"[0-9a-f]*\"/\"sha256\" : \"$sum\"/" -e "s/\"size\" : [0-9]*/\"size\" : $size/" \
                -e "s/\"hardware\" : \"[^\"]*\"/\"hardware\" : \"${1:-\#(manifestN.hardware)}\"/" "$index"
            openssl pkeyutl -sign -inkey \#(n.privateKey) -rawin -in "$index" -out "$index.sig"

            """#.write(toFile: resign, atomically: true, encoding: .utf8)
        // Where N+2's manifest and signature are in its bundle (tar: 512-byte headers, data padded to 512).
        let head = try RawFile.openForReading(bad.bundle).read(count: 512, at: 0)
        let manifestSize = try #require(Int(String(decoding: head[124..<135], as: UTF8.self), radix: 8))
        let signatureAt = 512 + (manifestSize + 511) / 512 * 512 + 512
        let log = dir + "/serial.log"
        let result = try await TestSupport.run(
            TestSupport.packageRoot + "/scripts/e2e-update.sh",
            [
                image, channel, "--timeout", "3000", "--log", log,
                // Power cuts: during the download, during the slot write, right after the entry is written,
                // and during the first boot of the new slot (before its health gate).
                "--at", "build=\(b1) channel=stable decision=install", "cut:20",
                "--at", "slot=b \\[NodeRuntimeCore\\] installing", "cut:8",
                "--at", "entry=micromirror-b\\+3.conf slot=b \\[NodeRuntimeCore\\] installed", "cut",
                "--at", "Started .*ssh\\.service", "cut",
                // Blessed on its second try. Then bad input, each refused before a byte reaches a slot,
                // each step's refusal (a different message from the one before) cueing the next:
                // the index's signature altered,
                "--at", "last=build \(b1) in slot b passed its health gate and is blessed",
                "sh:printf X | dd of=\(channel)/stable.json.sig bs=1 seek=3 conv=notrunc status=none && \(announce)",
                // an older build (N itself),
                "--at", "error=signature: http://192.0.2.1:8080/stable.json is not signed by a trusted key", "\(publish(n.bundle)) && \(announce)",
                // N+2's index signed by a key the image does not trust (made aside, then moved in: never a
                // moment with a good index),
                "--at", "decision=the release is older than the running build and the channel does not allow a downgrade",
                "sh:\(publishing(bad.bundle, dir + "/aside"))"
                    + " && openssl genpkey -algorithm ed25519 -out \(dir)/stranger.key"
                    + " && openssl pkeyutl -sign -inkey \(dir)/stranger.key -rawin -in \(dir)/aside/stable.json -out \(dir)/aside/stable.json.sig"
                    + " && mv \(dir)/aside/\(name(bad.bundle)) \(dir)/aside/stable.json \(dir)/aside/stable.json.sig \(channel)/ && \(announce)",
                // N+2 properly, onto a node whose mm-data is full,
                "--at", "error=signature: http://192.0.2.1:8080/stable.json is not signed by a trusted key",
                "sh:\(ssh) 'fallocate -l $(( $(df --output=avail -B1 /srv | tail -1) - (64 << 20) )) /srv/fill'"
                    + " && \(publishing(bad.bundle, channel)) && \(announce)",
                // then, behind an index signed for exactly what the server holds: a byte of the manifest
                // flipped (stopped after its first kilobytes),
                "--at", "error=mm-data has .* free at",
                "sh:printf X | dd of=\(served) bs=1 seek=600 conv=notrunc status=none && sh \(resign) && \(ssh) rm /srv/fill && \(announce)",
                // a copy cut short (refused from the answer's head),
                "--at", "manifest.json is not signed by a trusted key",
                "sh:cp \(bad.bundle) \(served) && truncate -s 100M \(served) && \(announce)",
                // the manifest signed by a stranger's key,
                "--at", "the server's copy is 104857600 bytes",
                "sh:cp \(bad.bundle) \(served) && dd if=\(served) of=\(dir)/m.json bs=1 skip=512 count=\(manifestSize) status=none"
                    + " && openssl pkeyutl -sign -inkey \(dir)/stranger.key -rawin -in \(dir)/m.json -out \(dir)/m.sig"
                    + " && dd if=\(dir)/m.sig of=\(served) bs=1 seek=\(signatureAt) conv=notrunc status=none && sh \(resign) && \(announce)",
                // a release for other hardware,
                "--at", "manifest.json is not signed by a trusted key", "sh:sh \(resign) hp-t620 && \(announce)",
                // a byte of the root payload flipped (stopped at the end of that payload),
                "--at", "decision=the release is for hp-t620",
                "sh:cp \(bad.bundle) \(served) && printf X | dd of=\(served) bs=1 seek=300000000 conv=notrunc status=none && sh \(resign) && \(announce)",
                // and an index naming a bundle the server does not have.
                "--at", "payload root.erofs: SHA-256 is .* the download was discarded", "sh:rm \(served) && \(announce)",
                // Slot a is still N, byte for byte. Then N+2 for real, whose server is masked.
                "--at", "HTTP 404 \\(the channel names a bundle the server does not have\\)",
                "sh:\(ssh) 'head -c \(rootA.contentSize) /dev/disk/by-partlabel/\(DiskLayout.Label.rootA) | sha256sum' > \(dir)/slot-a.sha && \(publishing(bad.bundle, channel)) && \(announce)",
                "--at", "mm-node health: unhealthy", "sh:true",
                // Back on N+1 by itself; once it has declined N+2 at a poll, N+3 comes out.
                "--at", "build=\(b2) channel=stable decision=this build did not come up healthy here before", "\(publish(fixed.bundle)) && \(announce)",
                "--until", "micromirror-boot: slot=a .*build=\(b3) .*failed=",
                // Once the updater has recorded the blessing, the guest's writes (the ESP, the state on
                // mm-data) reach the disk file.
                "--then",
                "for i in $(seq 60); do \(ssh) \"grep -q 'build \(b3) in slot a passed its health gate' /srv/state/update.json\" && break; sleep 3; done;"
                    + " \(ssh) mm-node update status --json > \(dir)/status.json; \(ssh) sync",
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
        #expect(console.components(separatedBy: "[qemu-boot: power cut]").count == 5, "four power cuts")
        #expect(console.contains("resuming the download"), "the download cut by the power started over instead of resuming")
        #expect(console.contains("the install of build \(b1) was interrupted; it starts again"), "the cut slot write was not noticed")
        // A ×3 (power cuts), B cut on its first try, B blessed; N+2 in A frozen on its first try (reset
        // by the watchdog), unhealthy on its second; back to B by itself; N+3 in A.
        let kernels = console.components(separatedBy: "Linux version ").count - 1
        #expect(kernels == 9, "\(kernels) boots, not 9: the frozen trial boot was not reset by the watchdog, or a boot was missed:\n\(boots)")
        #expect(console.contains("micromirror-boot: slot=b root=mm-root-b image=micromirror version=0.1.1 build=\(b1)"), "N+1 never came up")
        #expect(console.components(separatedBy: "mm-test-freeze: crashing PID 1").count == 2, "N+2's first try did not freeze (once)")
        #expect(console.contains("mm-node health: unhealthy: mm-node-serve.service: mm-node-serve.service is masked"), "\(console.suffix(3000))")
        // The frozen try counted: the unhealthy second one leaves no try (two done), and the firmware takes slot b.
        #expect(console.components(separatedBy: "slot a's entry is now micromirror-a+0-2.conf; rebooting into the other slot").count == 2, "\(console.suffix(3000))")
        #expect(console.contains("build=\(b2) [NodeRuntimeCore] this node rolled back a release before"), "the rollback was not reported")
        #expect(console.contains("micromirror-boot: slot=a root=mm-root-a image=micromirror version=0.1.3 build=\(b3)"))
        #expect(!boots.contains { $0.contains("build=\(b2)") }, "N+2 reached multi-user healthy:\n\(boots)")

        // The channel's log: N+1 resumed with a range request; N+2 fetched once, never again.
        let access = (try? String(contentsOfFile: channel + ".access.log", encoding: .utf8)) ?? ""
        #expect(access.contains("GET /\(name(next.bundle)) HTTP/1.1\" 206"), "no resumed download of N+1:\n\(access)")
        // (four tampered copies, one 404 while the bundle was away, then one download: none after the rollback)
        let fetches = access.split(separator: "\n").filter { $0.contains("GET /\(name(bad.bundle)) HTTP/1.1\" 200") }
        #expect(fetches.count == 5, "N+2 was downloaded again after its rollback:\n\(access)")
        // The bad manifests and the short copy were stopped early: a fraction of the bundle left the server.
        let sent = fetches.map { Int64($0.split(separator: " ")[9]) ?? -1 }
        #expect(sent.prefix(3).allSatisfy { $0 < 64 << 20 }, "a tampered bundle was fetched past its manifest:\n\(access)")
        #expect(!access.contains("GET /\(name(n.bundle))"), "the older build was downloaded:\n\(access)")
        #expect(access.contains("GET /\(name(bad.bundle)) HTTP/1.1\" 404"), "\(access)")
        // Slot a, the one all that bad input would have written, still held N's root as flashed.
        let slotA = (try? String(contentsOfFile: dir + "/slot-a.sha", encoding: .utf8)) ?? "(not hashed)"
        #expect(slotA.hasPrefix(try #require(rootA.sha256) + " "), "slot a changed under the bad input: \(slotA)")

        // What the node says of itself (`mm-node update status --json`), then what the disk holds.
        let statusText = (try? String(contentsOfFile: dir + "/status.json", encoding: .utf8)) ?? "(no status)"
        let status = try JSONDecoder().decode(StatusReport.self, from: Data(statusText.utf8))
        #expect(status.bootedSlot == "a" && status.running.buildNumber == b3, "\(statusText)")
        #expect(status.slots.map(\.slot) == ["a", "b"], "\(statusText)")
        #expect(status.slots[0].buildNumber == b3 && status.slots[0].blessed && status.slots[0].booted, "\(statusText)")
        #expect(status.slots[1].buildNumber == b1 && status.slots[1].blessed && !status.slots[1].booted, "\(statusText)")
        #expect(status.state.rolledBack == [b2] && status.state.phase == "idle", "\(statusText)")

        // On the disk afterwards, as the status said: slot a blessed with N+3, slot b still N+1.
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
        // The bad input was refused and recorded, and no install followed any of it.
        #expect(console.contains("decision=the release is older than the running build"), "the older build was not declined")
        #expect(console.contains("decision=the release is for hp-t620"), "the release for other hardware was not declined")
        let refusals = [
            "update failed: signature: http://192.0.2.1:8080/stable.json is not signed",  // altered, then a stranger's key
            "update failed: mm-data has ",
            "manifest.json is not signed by a trusted key",  // a flipped byte, then a stranger's key
            "the server's copy is 104857600 bytes", "payload root.erofs: SHA-256 is",
            "HTTP 404 (the channel names a bundle the server does not have)",
        ]
        let refused = events.indices.filter { i in refusals.contains { events[i].contains($0) } }
        #expect(events.filter { $0.contains(refusals[0]) }.count >= 2, "the altered and the stranger's signature: \(events)")
        #expect(events.filter { $0.contains(refusals[2]) }.count >= 2, "the flipped manifest and the stranger's: \(events)")
        for (i, refusal) in refusals.enumerated() { #expect(events.contains { $0.contains(refusal) }, "refusal \(i) not recorded: \(events)") }
        #expect(refused.allSatisfy { !events[$0 + 1].hasPrefix("installing") }, "\(events)")
        #expect(state.boot?.slot == "a" && state.boot?.buildNumber == b3)
    }

    /// The parts of `mm-node update status --json` the test reads.
    struct StatusReport: Decodable {
        struct Running: Decodable { var buildNumber: Int64 }
        struct Slot: Decodable {
            var slot: String
            var buildNumber: Int64?
            var booted: Bool
            var blessed: Bool
        }
        var running: Running
        var bootedSlot: String
        var slots: [Slot]
        var state: StateFile
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
