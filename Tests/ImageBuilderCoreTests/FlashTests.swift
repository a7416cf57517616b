import Foundation
import ImageBuilderCore
import Logging
import SystemKit
import MicromirrorKit
import MicromirrorTestSupport
import Testing

/// `mm-image flash` onto real loop devices with the built image: what lands on the drive, what is
/// refused before a byte is written, and a drive changed behind the writer's back.
@Suite("Flashing drives", .serialized)
struct FlashTests {
    /// Loop devices over fresh sparse files of the given sizes (a byte pattern at `stale` in each,
    /// as a drive's previous life), detached after `body`.
    static func withDrives<T>(_ sizes: [Int64], stale: Int64? = nil, _ body: ([String], String) async throws -> T) async throws -> T {
        let dir = try await TestSupport.scratch("flash")
        var devices: [String] = []
        defer {
            for device in devices { ToolRun.cleanUp("losetup", ["-d", device]) }
            try? FileManager.default.removeItem(atPath: dir)
        }
        for (index, size) in sizes.enumerated() {
            let file = dir + "/drive\(index).img"
            try await TestSupport.check("truncate", ["-s", "\(size)", file])
            if let stale, stale < size {
                let handle = try RawFile.openForWriting(file)
                try handle.write([UInt8](repeating: 0xBB, count: 1 << 20), at: stale)
            }
            devices.append(try await TestSupport.check("losetup", ["--find", "--show", file]).stdout.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        return try await body(devices, dir)
    }

    static func flash(_ a: BuiltImage.Artifacts, _ pairs: [(String, String)], inventory: String, extra: [String] = []) async throws -> TestSupport.Output {
        var arguments = ["flash", a.image, "--pubkey", a.publicKey, "--yes", "--inventory", inventory]
        for (device, node) in pairs { arguments += ["--device", device, "--node", node] }
        return try await TestSupport.run(TestSupport.mmImage, arguments + extra)
    }

    @Test("a flashed drive has the image's partitions, its node file and the mapped ranges the block map hashes (as bmaptool writes them); what lay beyond the image is gone; the inventory records it")
    func flashOne() async throws {
        let a = try await BuiltImage.shared.artifacts()
        let imageSize = try RawFile.openForReading(a.image).size()
        try await Self.withDrives([imageSize + (512 << 20)], stale: imageSize + (100 << 20)) { devices, dir in
            let drive = devices[0]
            let example = TestSupport.packageRoot + "/nodes/example.yaml"
            let result = try await Self.flash(a, [(drive, example)], inventory: dir + "/inventory.jsonl")
            #expect(result.status == 0 && result.stdout.contains("\(drive)  example-isp.mm.fcix.net  passed"), "\(result.combined)")
            #expect(result.stdout.contains("label: example-isp.mm.fcix.net | sponsor example-isp |") && result.stdout.contains("micromirror 0.1.0 build"), "\(result.stdout)")
            #expect(result.stderr.contains("\(drive): write 100% (") && result.stderr.contains("/s"), "progress with its rate: \(result.stderr)")
            // The same partitions as the image, the GPT spanning the whole drive.
            let expected = try await ImageInspector(logger: .init(label: "t")).inspect(path: a.image).partitions.map { [$0.label, $0.type, "\($0.offset)", "\($0.size)"] }
            let got = try await ImageInspector(logger: .init(label: "t")).inspect(path: drive).partitions.map { [$0.label, $0.type, "\($0.offset)", "\($0.size)"] }
            #expect(got == expected)
            await #expect(try TestSupport.run("sgdisk", ["-v", drive]).stdout.contains("No problems found"))
            // The node file in mm-config, nothing else changed: every mapped range hashes as the map says.
            let config = try #require(GPT.read(from: RawFile.openForReading(drive)).partition(named: DiskLayout.Label.config))
            let written = try await TestSupport.run("debugfs", ["-R", "cat node.yaml", "\(drive)?offset=\(config.offsetInBytes)"])
            #expect(written.stdout == (try String(contentsOfFile: example, encoding: .utf8)))
            let map = try BlockMap.parse(try String(contentsOfFile: a.bmap, encoding: .utf8), file: a.bmap)
            // What the flash changes on purpose after its verification: the node file's partition, and
            // the GPT's headers (primary at the start, the image's backup at its end) when it moved the backup.
            let changed = [config.offsetInBytes..<(config.offsetInBytes + config.sizeInBytes), 0..<(1 << 20), (imageSize - (1 << 20))..<imageSize]
            let outside = BlockMap.Parsed(
                imageSize: map.imageSize, ranges: map.ranges.filter { range in !changed.contains { $0.overlaps(range.offset..<(range.offset + range.length)) } }
            )
            #expect(outside.mappedBytes > map.mappedBytes / 2, "the comparison left out most of the image")
            try DiskFlasher(image: a.image, blockMap: outside).readBack(try FlashTarget.inspect(drive))
            // bmaptool, given our map, writes the same bytes where the map says there are any.
            let copy = dir + "/bmaptool.img"
            try await TestSupport.check("bmaptool", ["copy", "--bmap", a.bmap, a.image, copy])
            try DiskFlasher(image: a.image, blockMap: map).readBack(try FlashTarget.inspect(copy))
            // The drive's previous life beyond the image was discarded.
            let tail = try RawFile.openForReading(drive).read(count: 1 << 20, at: imageSize + (100 << 20))
            #expect(tail.allSatisfy { $0 == 0 }, "stale data beyond the image survived the flash")
            let records = try String(contentsOfFile: dir + "/inventory.jsonl", encoding: .utf8).split(separator: "\n")
            #expect(records.count == 1 && records[0].contains("\"node\":\"example-isp.mm.fcix.net\"") && records[0].contains("\"result\":\"passed\""), "\(records)")
            let listed = try await TestSupport.run(TestSupport.mmImage, ["inventory", "--file", dir + "/inventory.jsonl", "example-isp.mm.fcix.net"])
            #expect(listed.status == 0 && listed.stdout.contains("example-isp.mm.fcix.net") && listed.stdout.contains("0.1.0 build") && listed.stdout.contains("passed"), "\(listed.combined)")

            // Re-verified later: passes; a byte changed on the drive since fails, naming where.
            let again = try await TestSupport.run(TestSupport.mmImage, ["flash", a.image, "--check", drive, "--node", example])
            #expect(again.status == 0 && again.stdout.contains("\(drive): passed") && again.stdout.contains("mm-config holds"), "\(again.combined)")
            let victim = try #require(outside.ranges.last)
            let spot = victim.offset + victim.length / 3
            let handle = try RawFile.openForWriting(drive)
            let byte = try handle.read(count: 1, at: spot)
            try handle.write([byte[0] ^ 0x80], at: spot)
            try handle.sync()
            let spoiled = try await TestSupport.run(TestSupport.mmImage, ["flash", a.image, "--check", drive])
            #expect(spoiled.status == 1 && spoiled.stdout.contains("first difference at byte \(spot)"), "\(spoiled.combined)")
        }
    }

    @Test("a byte changed on the drive between the write and the read-back fails the drive, naming the offset")
    func flippedByte() async throws {
        let a = try await BuiltImage.shared.artifacts()
        let dir = try await TestSupport.scratch("flash-flip")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let map = try BlockMap.parse(try String(contentsOfFile: a.bmap, encoding: .utf8), file: a.bmap)
        let target = try FlashTarget.inspect({ FileManager.default.createFile(atPath: dir + "/drive.img", contents: nil); return dir + "/drive.img" }())
        var flasher = DiskFlasher(image: a.image, blockMap: map)
        let victim = map.ranges[map.ranges.count / 2]
        flasher.betweenWriteAndVerify = {
            // Through a second handle, behind the writer's back.
            let other = try RawFile.openForWriting(dir + "/drive.img")
            let offset = victim.offset + victim.length / 2
            let byte = try other.read(count: 1, at: offset)
            try other.write([byte[0] ^ 0x01], at: offset)
            try other.sync()
        }
        do {
            _ = try flasher.write(to: target)
            Issue.record("the changed byte was not noticed")
        } catch {
            #expect("\(error)".contains("does not hold what was written in the range at offset \(victim.offset) (\(victim.length) bytes), first difference at byte \(victim.offset + victim.length / 2)"), "\(error)")
        }
    }

    @Test("refused before a byte is written: an invalid node file, a drive too small, a mounted one; three drives at once, one too small: two pass, one is refused, three records")
    func refusals() async throws {
        let a = try await BuiltImage.shared.artifacts()
        let imageSize = try RawFile.openForReading(a.image).size()
        let example = TestSupport.packageRoot + "/nodes/example.yaml"
        try await Self.withDrives([imageSize + (64 << 20), imageSize - (64 << 20), imageSize + (64 << 20)]) { devices, dir in
            let inventory = dir + "/inventory.jsonl"
            // An invalid node file: nothing is written anywhere.
            try "hostname: Not A Name\n".write(toFile: dir + "/bad.yaml", atomically: true, encoding: .utf8)
            let bad = try await Self.flash(a, [(devices[0], example), (devices[2], dir + "/bad.yaml")], inventory: inventory)
            #expect(bad.status == 1 && bad.stderr.contains("bad.yaml") && bad.stderr.contains("nothing was written"), "\(bad.combined)")
            #expect(try RawFile.openForReading(devices[0]).read(count: 4096, at: 0).allSatisfy { $0 == 0 }, "a byte was written despite the bad node file")
            #expect(!FileManager.default.fileExists(atPath: inventory))

            // Three at once, the middle one too small.
            let three = try await Self.flash(a, [(devices[0], example), (devices[1], example), (devices[2], example)], inventory: inventory)
            #expect(three.status == 1, "\(three.combined)")
            #expect(three.stdout.contains("\(devices[0])  example-isp.mm.fcix.net  passed") && three.stdout.contains("\(devices[2])  example-isp.mm.fcix.net  passed"), "\(three.stdout)")
            #expect(three.stdout.contains("\(devices[1])  example-isp.mm.fcix.net  refused: it holds") && three.stdout.contains("less than the image's"), "\(three.stdout)")
            let records = try String(contentsOfFile: inventory, encoding: .utf8).split(separator: "\n")
            #expect(records.count == 3 && records.filter { $0.contains("\"result\":\"passed\"") }.count == 2, "\(records)")

            // For scripts: JSON events only on standard output.
            let events = try await Self.flash(a, [(devices[2], example)], inventory: inventory, extra: ["--json"])
            let lines = events.stdout.split(separator: "\n")
            #expect(events.status == 0 && !lines.isEmpty && lines.allSatisfy { (try? JSONSerialization.jsonObject(with: Data($0.utf8))) != nil }, "\(events.stdout)")
            #expect(lines.contains { $0.contains("\"event\":\"progress\"") && $0.contains("\"stage\":\"verify\"") }, "\(events.stdout)")
            #expect(lines.last?.contains("\"event\":\"result\"") == true && lines.last?.contains("\"passed\":true") == true, "\(events.stdout)")

            // A drive in use: mm-config of the flashed drive mounted.
            _ = try await TestSupport.run("partx", ["-a", devices[0]])
            let config = devices[0] + "p4"
            for _ in 0..<50 where !FileManager.default.fileExists(atPath: config) { try await Task.sleep(for: .milliseconds(100)) }
            let mountpoint = dir + "/mnt"
            try FileManager.default.createDirectory(atPath: mountpoint, withIntermediateDirectories: true)
            try await TestSupport.check("mount", ["-o", "ro", config, mountpoint])
            defer {
                ToolRun.cleanUp("umount", [mountpoint])
                ToolRun.cleanUp("partx", ["-d", devices[0]])
            }
            let mounted = try await Self.flash(a, [(devices[0], example)], inventory: inventory)
            #expect(mounted.status == 1 && mounted.stderr.contains("refusing \(devices[0]): it is mounted: \((devices[0] as NSString).lastPathComponent)p4 on \(mountpoint)"), "\(mounted.combined)")
        }
    }
    @Test("the block map is signed: a map that is not the release's is refused before a byte is written, a byte changed in the image fails the drive at its range; without --pubkey the image's own keyring is used and named; each report_mirror.conf goes to its node's drive; with --fleet-ca each drive gets its own identity key and a watchtower certificate for it")
    func signedMapAndKeyring() async throws {
        let a = try await BuiltImage.shared.artifacts()
        let manifest = try Manifest.parse(Array(try Data(contentsOf: URL(fileURLWithPath: a.manifest))), source: a.manifest)
        let signedMap = try #require(manifest.blockMap, "the manifest does not sign the block map")
        #expect(signedMap.sha256 == SHA256Hasher.hex(of: Array(try Data(contentsOf: URL(fileURLWithPath: a.bmap)))))
        let imageSize = try RawFile.openForReading(a.image).size()
        let example = TestSupport.packageRoot + "/nodes/example.yaml"
        try await Self.withDrives([imageSize + (64 << 20), imageSize + (64 << 20)]) { devices, dir in
            let inventory = dir + "/inventory.jsonl"
            // A block map edited after signing (one range dropped): refused before any drive is touched.
            let map = try String(contentsOfFile: a.bmap, encoding: .utf8)
            var lines = map.components(separatedBy: "\n")
            lines.remove(at: try #require(lines.lastIndex { $0.contains("<Range") }))
            try lines.joined(separator: "\n").write(toFile: dir + "/edited.bmap", atomically: true, encoding: .utf8)
            let edited = try await Self.flash(a, [(devices[0], example)], inventory: inventory, extra: ["--bmap", dir + "/edited.bmap"])
            #expect(edited.status == 1 && edited.stderr.contains("verification FAILED") && edited.stderr.contains("not this release's block map") && edited.stderr.contains("nothing was written"), "\(edited.combined)")
            #expect(try RawFile.openForReading(devices[0]).read(count: 4096, at: 0).allSatisfy { $0 == 0 }, "a byte was written with an unsigned block map")

            // A byte changed in a mapped range of the image after it was signed: that drive fails at the range.
            let copy = dir + "/changed.img"
            try await TestSupport.check("cp", ["--sparse=always", a.image, copy])
            try FileManager.default.copyItem(atPath: a.bmap, toPath: copy + ".bmap")
            let parsed = try BlockMap.parse(map, file: a.bmap)
            let victim = parsed.ranges[parsed.ranges.count / 2]
            let handle = try RawFile.openForWriting(copy)
            let byte = try handle.read(count: 1, at: victim.offset + 1000)
            try handle.write([byte[0] ^ 0x04], at: victim.offset + 1000)
            let changed = try await TestSupport.run(
                TestSupport.mmImage,
                ["flash", copy, "--manifest", a.manifest, "--pubkey", a.publicKey, "--yes", "--inventory", inventory, "--device", devices[0], "--node", example]
            )
            #expect(changed.status == 1 && changed.stderr.contains("differs from its block map at offset \(victim.offset)") && changed.stdout.contains("FAILED"), "\(changed.combined)")
            #expect(!changed.stdout.contains("label:"), "a drive with a changed image got a label")

            // Two nodes, a report_mirror.conf for one of them, no --pubkey.
            let other = dir + "/other.yaml"
            try (try String(contentsOfFile: example, encoding: .utf8)).replacingOccurrences(of: "name: example-isp", with: "name: other-isp")
                .write(toFile: other, atomically: true, encoding: .utf8)
            func conf(_ host: String) -> String {
                "[global]\nenabled=1\nserver=https://mirrors.fedoraproject.org/xmlrpc\n[site]\nenabled=1\nname=FCIX\npassword=secret\n[host]\nenabled=1\nname=\(host)\n"
            }
            try conf("nobody.mm.fcix.net").write(toFile: dir + "/stray.conf", atomically: true, encoding: .utf8)
            try conf("other-isp.mm.fcix.net").write(toFile: dir + "/report_mirror.conf", atomically: true, encoding: .utf8)
            var arguments = ["flash", a.image, "--yes", "--inventory", inventory, "--device", devices[0], "--node", example, "--device", devices[1], "--node", other]
            let stray = try await TestSupport.run(TestSupport.mmImage, arguments + ["--report-mirror", dir + "/stray.conf"])
            #expect(stray.status == 1 && stray.stderr.contains("stray.conf: host.name: nobody.mm.fcix.net is none of the nodes being flashed") && stray.stderr.contains("nothing was written"), "\(stray.combined)")
            // A fleet CA that is not there: refused before a byte is written.
            let noCA = try await TestSupport.run(TestSupport.mmImage, arguments + ["--fleet-ca", dir + "/no-ca"])
            #expect(noCA.status == 1 && noCA.stderr.contains("holds no fleet CA") && noCA.stderr.contains("nothing was written"), "\(noCA.combined)")
            let authority = try FleetAuthority.create(directory: dir + "/fleet-ca", brokerNames: ["watchtower.fcix.net"])
            arguments += ["--report-mirror", dir + "/report_mirror.conf", "--fleet-ca", authority.directory]
            let both = try await TestSupport.run(TestSupport.mmImage, arguments)
            #expect(both.status == 0 && both.stdout.contains("\(devices[0])  example-isp.mm.fcix.net  passed") && both.stdout.contains("\(devices[1])  other-isp.mm.fcix.net  passed"), "\(both.combined)")
            let keyID = try Ed25519PublicKey(pem: Array(try Data(contentsOf: URL(fileURLWithPath: a.publicKey))), source: a.publicKey).keyID
            #expect(both.stdout.contains("keyring inside the image (key \(keyID))") && both.stdout.contains("not who built it"), "\(both.stdout)")
            for (device, expected) in [(devices[0], nil), (devices[1], conf("other-isp.mm.fcix.net"))] as [(String, String?)] {
                let config = try #require(GPT.read(from: RawFile.openForReading(device)).partition(named: DiskLayout.Label.config))
                let found = try await TestSupport.run("debugfs", ["-R", "cat report_mirror.conf", "\(device)?offset=\(config.offsetInBytes)"])
                if let expected { #expect(found.stdout == expected, "\(device): \(found.combined)") } else { #expect(found.stdout.isEmpty, "\(device) got another node's report_mirror.conf") }
            }
            // Each drive got its own identity key (root-only) and a certificate for it, from the fleet CA, in its node's name.
            for (device, host) in [(devices[0], "example-isp.mm.fcix.net"), (devices[1], "other-isp.mm.fcix.net")] {
                let config = try #require(GPT.read(from: RawFile.openForReading(device)).partition(named: DiskLayout.Label.config))
                let at = "\(device)?offset=\(config.offsetInBytes)"
                let key = try Ed25519PrivateKey(pem: Array(try await TestSupport.run("debugfs", ["-R", "cat identity/node.key", at]).stdout.utf8), source: device)
                let certificate = try X509Certificate(pem: Array(try await TestSupport.run("debugfs", ["-R", "cat credential/node.crt", at]).stdout.utf8), source: device)
                let ca = try await TestSupport.run("debugfs", ["-R", "cat credential/ca.crt", at]).stdout
                let (keyRaw, caPEM) = (try key.publicKey().raw(), String(decoding: try authority.certificate.pem(), as: UTF8.self))
                #expect(certificate.commonName == host && certificate.publicKeyRaw == keyRaw && certificate.isSigned(by: authority.certificate), "\(device)")
                #expect(ca == caPEM)
                #expect(certificate.notAfter.timeIntervalSince(Date()) > 29 * 86400)
                let keyStat = try await TestSupport.run("debugfs", ["-R", "stat identity/node.key", at]).stdout
                #expect(keyStat.contains("Mode:  0600") && keyStat.contains("User:     0"), "root-only: \(keyStat.prefix(300))")
                let dirStat = try await TestSupport.run("debugfs", ["-R", "stat identity", at]).stdout
                #expect(dirStat.contains("Mode:  0700") && dirStat.contains("User:     0"), "\(dirStat.prefix(300))")
                #expect(try authority.current(node: host)?.serial == certificate.serial, "the NOC keeps the node's current certificate")
            }
            #expect(both.stdout.contains("identity and watchtower certificate"), "\(both.stdout)")
        }
    }
}
