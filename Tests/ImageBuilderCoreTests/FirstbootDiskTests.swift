import Foundation
import MicromirrorKit
import SystemKit
import MicromirrorTestSupport
import Testing

/// First boot on a loop device holding the built image, on a "disk" larger than the image.
@Suite("First-boot disk growth and node files on the built image", .serialized)
struct FirstbootDiskTests {
    @Test("first boot grows mm-data to the end of the device and makes ext4; a second run changes nothing")
    func growth() async throws {
        let a = try await BuiltImage.shared.artifacts()
        let grown: Int64 = 4 << 30
        let image = try await TestSupport.copyImage(a.image, scratchName: "grow", size: grown)
        let dir = (image as NSString).deletingLastPathComponent
        try FileManager.default.createDirectory(atPath: dir + "/state", withIntermediateDirectories: true)
        let device = try await TestSupport.check("losetup", ["--find", "--show", image]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        defer { ToolRun.cleanUp("losetup", ["-d", device]) }
        let firstboot = TestSupport.binaries + "/mm-firstboot"
        let args = [
            "apply", "--config", TestSupport.packageRoot + "/nodes/example.yaml", "--state", dir + "/state", "--root", dir + "/root",
            "--disk", device, "--steps", "disk,identity",
        ]
        let first = try await TestSupport.run(firstboot, args)
        #expect(first.status == 0, "\(first.combined)")
        #expect(first.stdout.contains("grew mm-data from 64.0 MiB to"), "\(first.stdout)")
        await #expect(try TestSupport.check("sgdisk", ["-v", device]).stdout.contains("No problems found"))

        let gpt = try GPT.read(from: RawFile.openForReading(image))
        let data = try #require(gpt.partition(named: "mm-data"))
        #expect(gpt.backupLBA == grown / 512 - 1)
        #expect(data.offsetInBytes + data.sizeInBytes == grown - (1 << 20), "mm-data must end 1 MiB before the end of the disk")
        let fs = try await TestSupport.withLoopDevice(image, offset: data.offsetInBytes, length: data.sizeInBytes) { part in
            try await TestSupport.check("blkid", ["-p", "-o", "export", part]).stdout
        }
        #expect(fs.contains("TYPE=ext4") && fs.contains("LABEL=mm-data"), "\(fs)")
        let blocks = try await TestSupport.withLoopDevice(image, offset: data.offsetInBytes, length: data.sizeInBytes) { part in
            try await TestSupport.check("dumpe2fs", ["-h", part]).stdout
        }
        let blockCount = try #require(blocks.firstMatch(of: /Block count:\s+(\d+)/)).1
        #expect(Int64(blockCount)! * 4096 == data.sizeInBytes, "the filesystem must fill the grown partition")
        for name in ["identity/ssh_host_ed25519_key", "identity/node.key", "identity/machine-id", "firstboot.done"] {
            #expect(FileManager.default.fileExists(atPath: dir + "/state/" + name), "missing \(name)")
        }
        let keyBefore = try Data(contentsOf: URL(fileURLWithPath: dir + "/state/identity/node.key"))

        // Second boot: nothing changes, not the table, not the filesystem, not the identity.
        let before = try await TestSupport.check("sha256sum", [image]).stdout
        let second = try await TestSupport.run(firstboot, args)
        #expect(second.status == 0, "\(second.combined)")
        #expect(!second.stdout.contains("grew") && !second.stdout.contains("created"), "\(second.stdout)")
        await #expect(try TestSupport.check("sha256sum", [image]).stdout == before, "the second run changed the disk")
        #expect(try Data(contentsOf: URL(fileURLWithPath: dir + "/state/identity/node.key")) == keyBefore)
    }

    @Test("an SSD that held a filesystem where mm-data lies: flashed with bmaptool, its first boot still formats mm-data")
    func reusedDrive() async throws {
        let a = try await BuiltImage.shared.artifacts()
        let dir = try await TestSupport.scratch("reused")
        let disk = dir + "/ssd.img"
        let size = try #require(try FileManager.default.attributesOfItem(atPath: a.image)[.size] as? NSNumber).int64Value
        try await TestSupport.check("truncate", ["-s", "\(size)", disk])
        let gpt = try GPT.read(from: RawFile.openForReading(a.image))
        let data = try #require(gpt.partition(named: "mm-data"))
        // The drive's previous life: an ext4 with a file, exactly where mm-data will be.
        try await TestSupport.check("mkfs.ext4", ["-q", "-F", "-E", "offset=\(data.offsetInBytes)", disk, "\(data.sizeInBytes / 1024)k"])
        try "old mirror\n".write(toFile: dir + "/old", atomically: true, encoding: .utf8)
        try await TestSupport.check("debugfs", ["-w", "-R", "write \(dir)/old old", "\(disk)?offset=\(data.offsetInBytes)"])
        // Flashed the way the NOC does today: bmaptool writes only the mapped ranges.
        try await TestSupport.check("bmaptool", ["copy", "--bmap", a.bmap, a.image, disk])
        try FileManager.default.createDirectory(atPath: dir + "/state", withIntermediateDirectories: true)
        let device = try await TestSupport.check("losetup", ["--find", "--show", disk]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        defer { ToolRun.cleanUp("losetup", ["-d", device]) }
        let first = try await TestSupport.run(
            TestSupport.binaries + "/mm-firstboot",
            ["apply", "--config", TestSupport.packageRoot + "/nodes/example.yaml", "--state", dir + "/state", "--root", dir + "/root", "--disk", device, "--steps", "disk"]
        )
        #expect(first.status == 0 && first.stdout.contains("made ext4 on mm-data"), "the old filesystem was kept: \(first.combined)")
        let listing = try await TestSupport.run("debugfs", ["-R", "ls -l /", "\(disk)?offset=\(data.offsetInBytes)"])
        #expect(!listing.combined.contains(" old"), "the previous life's files are still there: \(listing.combined)")
    }

    @Test("mm-image node check: ok for the example, every problem at once for a bad file, a project without a recipe refused")
    func nodeCheck() async throws {
        let ok = try await TestSupport.run(TestSupport.mmImage, ["node", "check", TestSupport.packageRoot + "/nodes/example.yaml"])
        #expect(ok.status == 0 && ok.stdout.contains("ok: example-isp.mm.fcix.net"), "\(ok.combined)")
        let dir = try await TestSupport.scratch("nodecheck")
        let text = try String(contentsOfFile: TestSupport.packageRoot + "/nodes/example.yaml", encoding: .utf8)
            .replacingOccurrences(of: "gateway: 192.0.2.1", with: "gateway: 198.51.100.1")
            .replacingOccurrences(of: "mtu: 1500", with: "mtu: 70000\n  vlan: 3")
        try text.write(toFile: dir + "/bad.yaml", atomically: true, encoding: .utf8)
        let bad = try await TestSupport.run(TestSupport.mmImage, ["node", "check", dir + "/bad.yaml"])
        #expect(bad.status == 1)
        #expect(bad.stderr.contains("3 problems:"), "\(bad.stderr)")
        #expect(bad.stderr.contains("bad.yaml:14: network.mtu: 70000 is out of range"), "\(bad.stderr)")
        #expect(bad.stderr.contains("network.ipv4.gateway: gateway 198.51.100.1 is not on-link"))
        #expect(bad.stderr.contains("bad.yaml:15: network.vlan: unknown key"))

        // A project without a recipe would sync nothing on the node: refused here, by name.
        let recipes = TestSupport.packageRoot + "/recipes"
        let checked = try await TestSupport.run(TestSupport.mmImage, ["node", "check", "--recipes", recipes, TestSupport.packageRoot + "/nodes/example.yaml"])
        #expect(checked.status == 0 && checked.stdout.contains("every project has a recipe in \(recipes)"), "\(checked.combined)")
        let unknown = try String(contentsOfFile: TestSupport.packageRoot + "/nodes/example.yaml", encoding: .utf8)
            .replacingOccurrences(of: "projects: [ubuntu-releases, almalinux, archlinux]", with: "projects: [ubuntu-releases, almalinux2, archlinux]")
        try unknown.write(toFile: dir + "/unknown.yaml", atomically: true, encoding: .utf8)
        let refused = try await TestSupport.run(TestSupport.mmImage, ["node", "check", "--recipes", recipes, dir + "/unknown.yaml"])
        #expect(refused.status == 1 && refused.stderr.contains("unknown.yaml: projects[1]: almalinux2 has no sync recipe in \(recipes)"), "\(refused.combined)")
    }

    @Test("mm-image node write puts the file into mm-config; an invalid file, or one naming a project the image has no recipe for, writes nothing")
    func nodeWrite() async throws {
        let a = try await BuiltImage.shared.artifacts()
        let image = try await TestSupport.copyImage(a.image, scratchName: "nodewrite")
        let dir = (image as NSString).deletingLastPathComponent
        let manifest = try Manifest.parse(Array(try Data(contentsOf: URL(fileURLWithPath: a.manifest))), source: a.manifest)
        let config = try #require(manifest.partitions.first { $0.label == "mm-config" })

        let invalid = dir + "/bad.yaml"
        try "sponsor: {name: Bad Name}\n".write(toFile: invalid, atomically: true, encoding: .utf8)
        let refused = try await TestSupport.run(TestSupport.mmImage, ["node", "write", image, invalid])
        #expect(refused.status == 1)
        #expect(refused.stderr.contains("nothing was written"))
        let absent = try await TestSupport.run("debugfs", ["-R", "stat node.yaml", "\(image)?offset=\(config.offset)"])
        #expect(absent.combined.contains("File not found"), "\(absent.combined)")

        // A project the image has no recipe for: refused, naming it, nothing written.
        let example = TestSupport.packageRoot + "/nodes/example.yaml"
        let unknown = dir + "/unknown.yaml"
        try String(contentsOfFile: example, encoding: .utf8)
            .replacingOccurrences(of: "projects: [ubuntu-releases, almalinux, archlinux]", with: "projects: [ubuntu-releases, almalinux, nosuch]")
            .write(toFile: unknown, atomically: true, encoding: .utf8)
        let noRecipe = try await TestSupport.run(TestSupport.mmImage, ["node", "write", image, unknown])
        #expect(noRecipe.status == 1 && noRecipe.stderr.contains("projects[2]: nosuch has no sync recipe in the image on \(image)"), "\(noRecipe.combined)")
        #expect(noRecipe.stderr.contains("almalinux, archlinux, centos") && noRecipe.stderr.contains("nothing was written"), "\(noRecipe.combined)")
        let stillAbsent = try await TestSupport.run("debugfs", ["-R", "stat node.yaml", "\(image)?offset=\(config.offset)"])
        #expect(stillAbsent.combined.contains("File not found"), "\(stillAbsent.combined)")
        // The image's own recipes are checked through a loop device; nothing of it stays attached.
        let loops = try await TestSupport.run("losetup", ["-j", image])
        #expect(loops.stdout.isEmpty, "\(loops.stdout)")

        try await TestSupport.check(TestSupport.mmImage, ["node", "write", image, example])
        // Read it back through a real ext4 mount of the partition.
        try await TestSupport.withLoopDevice(image, offset: config.offset, length: config.size) { device in
            let mountpoint = try await TestSupport.scratch("config-mount")
            try await TestSupport.check("mount", ["-t", "ext4", "-o", "ro", device, mountpoint])
            defer { ToolRun.cleanUp("umount", [mountpoint]) }
            let written = try String(contentsOfFile: mountpoint + "/node.yaml", encoding: .utf8)
            #expect(written == (try String(contentsOfFile: example, encoding: .utf8)))
            let mode = try FileManager.default.attributesOfItem(atPath: mountpoint + "/node.yaml")[.posixPermissions] as? NSNumber
            #expect(mode?.intValue == 0o600)
        }
        // Writing again replaces it; MirrorManager's report_mirror.conf goes with it, root-only, once checked.
        let conf = dir + "/report_mirror.conf"
        try "[global]\nenabled=1\nserver=https://mirrors.fedoraproject.org/xmlrpc\n[site]\nenabled=1\nname=FCIX\npassword=p\n[host]\nenabled=1\nname=n\n"
            .write(toFile: conf, atomically: true, encoding: .utf8)
        try "[global]\nenabled=1\n".write(toFile: dir + "/bad.conf", atomically: true, encoding: .utf8)
        let badConf = try await TestSupport.run(TestSupport.mmImage, ["node", "write", image, example, "--report-mirror", dir + "/bad.conf"])
        #expect(badConf.status == 1 && badConf.stderr.contains("bad.conf: global.server: missing"), "\(badConf.combined)")
        let noConf = try await TestSupport.run("debugfs", ["-R", "stat report_mirror.conf", "\(image)?offset=\(config.offset)"])
        #expect(noConf.combined.contains("File not found"), "\(noConf.combined)")
        try await TestSupport.check(TestSupport.mmImage, ["node", "write", image, example, "--report-mirror", conf])
        let written = try await TestSupport.run("debugfs", ["-R", "cat report_mirror.conf", "\(image)?offset=\(config.offset)"])
        #expect(written.stdout == (try String(contentsOfFile: conf, encoding: .utf8)))
        let mode = try await TestSupport.run("debugfs", ["-R", "stat report_mirror.conf", "\(image)?offset=\(config.offset)"])
        #expect(mode.stdout.contains("Mode:  0600"), "\(mode.stdout)")
        await #expect(try TestSupport.check("fsck.ext4", ["-n", "\(image)?offset=\(config.offset)"]).status == 0)
    }
}
