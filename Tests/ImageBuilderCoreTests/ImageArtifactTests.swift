import Foundation
import MicromirrorKit
import MicromirrorTestSupport
import Testing

/// The built default image, checked with tools we did not write.
@Suite("Built image, checked with standard tools", .serialized)
struct ImageArtifactTests {
    @Test("the build reports every stage with its elapsed time")
    func progress() async throws {
        let a = try await BuiltImage.shared.artifacts()
        for stage in 1...9 {
            #expect(a.buildOutput.contains("[\(stage)/9] "), "stage \(stage) not reported")
        }
        #expect(a.buildOutput.range(of: #"\[4/9\] root filesystem: erofs, .* \(\d+\.\d s\)"#, options: .regularExpression) != nil)
        #expect(a.buildOutput.contains("built micromirror 0.1.0"))
    }

    @Test("sgdisk finds a valid GPT with the DPS types and our labels")
    func sgdisk() async throws {
        let a = try await BuiltImage.shared.artifacts()
        let verify = try await TestSupport.check("sgdisk", ["-v", a.image])
        #expect(verify.stdout.contains("No problems found"))
        let expected: [(Int, String, String)] = [
            (1, "mm-esp", "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"),
            (2, "mm-root-a", "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"),
            (3, "mm-root-b", "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"),
            (4, "mm-config", "0FC63DAF-8483-4772-8E79-3D69D8477DE4"),
            (5, "mm-data", "3B8F8425-20E0-4F3B-907F-1A25A76F98E8"),
        ]
        for (number, label, type) in expected {
            let info = try await TestSupport.check("sgdisk", ["-i", "\(number)", a.image]).stdout
            #expect(info.contains("Partition name: '\(label)'"), "partition \(number): \(info)")
            #expect(info.contains("Partition GUID code: \(type)"), "partition \(number): \(info)")
        }
    }

    @Test("blkid sees vfat, erofs and ext4 on loop devices, lsblk their sizes; fsck.vfat is clean")
    func filesystems() async throws {
        let a = try await BuiltImage.shared.artifacts()
        let manifest = try Manifest.parse(Array(try Data(contentsOf: URL(fileURLWithPath: a.manifest))), source: a.manifest)
        let wanted = ["mm-esp": "vfat", "mm-root-a": "erofs", "mm-config": "ext4"]
        for partition in manifest.partitions {
            try await TestSupport.withLoopDevice(a.image, offset: partition.offset, length: partition.size) { device in
                let blkid = try await TestSupport.run("blkid", ["-p", "-o", "export", device]).stdout
                // No udev here, so lsblk cannot report filesystems; it does report the device size.
                let lsblk = try await TestSupport.check("lsblk", ["-b", "-n", "-d", "-o", "SIZE", device]).stdout
                #expect(Int64(lsblk.trimmingCharacters(in: .whitespacesAndNewlines)) == partition.size)
                if let type = wanted[partition.label] {
                    #expect(blkid.contains("TYPE=\(type)"), "\(partition.label): \(blkid)")
                    if let uuid = partition.filesystemUUID {
                        #expect(blkid.lowercased().contains("uuid=\(uuid.lowercased())"), "\(partition.label): \(blkid)")
                    }
                } else {
                    #expect(!blkid.contains("TYPE="), "\(partition.label) should be empty: \(blkid)")
                }
                if partition.label == "mm-esp" {
                    let fsck = try await TestSupport.run("fsck.vfat", ["-n", device])
                    #expect(fsck.status == 0, "fsck.vfat: \(fsck.combined)")
                }
            }
        }
    }

    @Test("the erofs root mounts read-only and holds our programs, units, keyring and identity")
    func rootContents() async throws {
        let a = try await BuiltImage.shared.artifacts()
        let manifest = try Manifest.parse(Array(try Data(contentsOf: URL(fileURLWithPath: a.manifest))), source: a.manifest)
        let root = try #require(manifest.partitions.first { $0.label == "mm-root-a" })
        try await TestSupport.withLoopDevice(a.image, offset: root.offset, length: root.size) { device in
            let dump = try await TestSupport.check("dump.erofs", [device]).stdout
            #expect(dump.lowercased().contains(root.filesystemUUID!.lowercased()), "dump.erofs: \(dump)")
            let fsck = try await TestSupport.run("fsck.erofs", [device])
            #expect(fsck.status == 0, "fsck.erofs: \(fsck.combined)")
            let mountpoint = try await TestSupport.scratch("erofs-mount")
            try await TestSupport.check("mount", ["-t", "erofs", "-o", "ro", device, mountpoint])
            defer { ToolRun.cleanUp("umount", [mountpoint]) }
            for path in [
                "/usr/bin/mm-firstboot", "/usr/bin/mm-node", "/usr/lib/systemd/system/mm-boot-status.service",
                "/etc/initramfs-tools/scripts/local-bottom/micromirror-overlay", "/usr/lib/micromirror/image.json",
            ] {
                #expect(FileManager.default.fileExists(atPath: mountpoint + path), "missing \(path)")
            }
            let keyring = try FileManager.default.contentsOfDirectory(atPath: mountpoint + "/usr/share/micromirror/keyring")
            let pub = try String(contentsOfFile: a.publicKey, encoding: .utf8)
            let installed = try String(contentsOfFile: mountpoint + "/usr/share/micromirror/keyring/" + keyring[0], encoding: .utf8)
            #expect(installed == pub)
            let identity = try String(contentsOfFile: mountpoint + "/usr/lib/micromirror/image.json", encoding: .utf8)
            #expect(identity.contains("\"buildNumber\" : \(BuiltImage.sourceDateEpoch)"))
            #expect(!FileManager.default.fileExists(atPath: mountpoint + "/etc/ssh/ssh_host_ed25519_key"), "host keys must not be baked in")
            let wants = mountpoint + "/etc/systemd/system/multi-user.target.wants/mm-boot-status.service"
            // The link is absolute inside the image, so read it rather than follow it.
            let target = try? FileManager.default.destinationOfSymbolicLink(atPath: wants)
            #expect(target?.hasSuffix("/systemd/system/mm-boot-status.service") == true, "mm-boot-status.service not enabled")
        }
    }

    @Test("the initramfs on the ESP can mount the root (erofs, overlay, virtio, our overlay script) and mm-config for the machine id")
    func initramfs() async throws {
        let a = try await BuiltImage.shared.artifacts()
        let manifest = try Manifest.parse(Array(try Data(contentsOf: URL(fileURLWithPath: a.manifest))), source: a.manifest)
        let esp = try #require(manifest.partitions.first { $0.label == "mm-esp" })
        let listing = try await TestSupport.initramfsListing(image: a.image, espOffset: esp.offset)
        for needed in [
            "erofs.ko", "overlay.ko", "ext4.ko", "virtio_blk.ko", "scripts/local-bottom/micromirror-overlay",
            "scripts/local-bottom/micromirror-machine-id",
        ] {
            #expect(listing.contains(needed), "\(needed) missing from the initramfs")
        }
    }

    @Test("bmaptool copy with our block map reproduces the raw image exactly")
    func bmaptoolCopy() async throws {
        let a = try await BuiltImage.shared.artifacts()
        let target = try await TestSupport.scratch("bmap") + "/copy.img"
        try await TestSupport.check("bmaptool", ["copy", "--bmap", a.bmap, a.image, target])
        try await TestSupport.check("cmp", [a.image, target])
        let bmap = try String(contentsOfFile: a.bmap, encoding: .utf8)
        let mapped = try #require(bmap.firstMatch(of: /<MappedBlocksCount> (\d+) </)).1
        let total = try #require(bmap.firstMatch(of: /<BlocksCount> (\d+) </)).1
        #expect(Int(mapped)! < Int(total)! / 2, "the empty slot B and data area should be unmapped")
    }

    @Test("openssl pkeyutl verifies our manifest signature with our public key")
    func opensslVerifies() async throws {
        let a = try await BuiltImage.shared.artifacts()
        let out = try await TestSupport.check(
            "openssl",
            ["pkeyutl", "-verify", "-pubin", "-inkey", a.publicKey, "-rawin", "-in", a.manifest, "-sigfile", a.manifest + ".sig"]
        )
        #expect(out.stdout.contains("Signature Verified Successfully"))
    }

    @Test("the manifest's hashes match sha256sum of the artifacts")
    func manifestMatchesFiles() async throws {
        let a = try await BuiltImage.shared.artifacts()
        let manifest = try Manifest.parse(Array(try Data(contentsOf: URL(fileURLWithPath: a.manifest))), source: a.manifest)
        let sum = try await TestSupport.check("sha256sum", [a.image]).stdout.split(separator: " ").first.map(String.init)
        #expect(sum == manifest.disk.sha256)
        let size = try #require(try FileManager.default.attributesOfItem(atPath: a.image)[.size] as? NSNumber)
        #expect(manifest.disk.size == size.int64Value)
        #expect(manifest.payloads.map(\.name) == ["root.erofs", "vmlinuz", "initrd.img"])
        #expect(manifest.buildNumber == Int64(BuiltImage.sourceDateEpoch))
        #expect(manifest.kernelCommandLine.contains("console=ttyS0"))
    }

    @Test("mm-image verify accepts the untouched image and bundle")
    func verifyAccepts() async throws {
        let a = try await BuiltImage.shared.artifacts()
        let image = try await TestSupport.run(TestSupport.mmImage, ["verify", a.image, "--pubkey", a.publicKey])
        #expect(image.status == 0, "\(image.combined)")
        #expect(image.stdout.contains("ok  partition mm-root-a"))
        #expect(image.stdout.contains("ok  disk"))
        let bundle = try await TestSupport.run(TestSupport.mmImage, ["verify", a.bundle, "--pubkey", a.publicKey])
        #expect(bundle.status == 0, "\(bundle.combined)")
        #expect(bundle.stdout.contains("ok  payload root.erofs"))
    }

    @Test("mm-image verify rejects a key that did not sign")
    func verifyRejectsOtherKey() async throws {
        let a = try await BuiltImage.shared.artifacts()
        let other = try await TestSupport.scratch("otherkey") + "/other"
        try await TestSupport.check(TestSupport.mmImage, ["keygen", "--out", other])
        let result = try await TestSupport.run(TestSupport.mmImage, ["verify", a.image, "--pubkey", other + ".pub"])
        #expect(result.status != 0)
        #expect(result.stderr.contains("signature"))
    }

    @Test("mm-image inspect shows partitions, filesystems, the slot A entry and the version")
    func inspect() async throws {
        let a = try await BuiltImage.shared.artifacts()
        let json = try await TestSupport.check(TestSupport.mmImage, ["inspect", a.image, "--json"]).stdout
        let report = try JSONSerialization.jsonObject(with: Data(json.utf8)) as! [String: Any]
        let partitions = report["partitions"] as! [[String: Any]]
        #expect(partitions.map { $0["label"] as! String } == ["mm-esp", "mm-root-a", "mm-root-b", "mm-config", "mm-data"])
        #expect(partitions.map { $0["filesystem"] as? String } == ["vfat", "erofs", nil, "ext4", nil])
        #expect(partitions.map { $0["type"] as! String } == ["esp", "root-x86-64", "root-x86-64", "linux-generic", "srv"])
        let entries = report["bootEntries"] as! [[String: Any]]
        #expect(entries.count == 1)
        let fields = entries[0]["fields"] as! [String: String]
        #expect(entries[0]["file"] as? String == "micromirror-a.conf")
        #expect(fields["options"]?.contains("root=PARTLABEL=mm-root-a") == true)
        #expect(fields["linux"] == "/micromirror/a/vmlinuz")
        #expect(report["manifestVersion"] as? String == "0.1.0")
        let text = try await TestSupport.check(TestSupport.mmImage, ["inspect", a.image]).stdout
        #expect(text.contains("mm-root-a") && text.contains("erofs") && text.contains("micromirror-a.conf"))
    }
}
