import Foundation
import ImageBuilderCore
import MicromirrorTestSupport
import Testing

/// Never the wrong disk: what `mm-image disks` (and the flasher after it) refuses, on real loop
/// devices, the test machine's own root disk, and a sysfs fixture for what this kernel cannot
/// build (device-mapper).
@Suite("Flash targets: never the wrong disk", .serialized)
struct FlashTargetTests {
    /// A loop device over a fresh sparse file of `megabytes`, detached after `body`.
    static func withLoop<T>(megabytes: Int, options: [String] = [], _ body: (String, String) async throws -> T) async throws -> T {
        let dir = try await TestSupport.scratch("flash-target")
        let file = dir + "/disk.img"
        try await TestSupport.check("truncate", ["-s", "\(megabytes)M", file])
        let device = try await TestSupport.check("losetup", ["--find", "--show"] + options + [file]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        // A loop device can keep partitions the kernel saw in an earlier life (a stale loopNp5).
        ToolRun.cleanUp("partx", ["-d", device])
        defer {
            ToolRun.cleanUp("partx", ["-d", device])
            ToolRun.cleanUp("losetup", ["-d", device])
            try? FileManager.default.removeItem(atPath: dir)
        }
        return try await body(device, dir)
    }

    @Test("a free loop device may be flashed with an image that fits; a smaller one, a read-only one and a regular file are judged as they are")
    func loopDevices() async throws {
        try await Self.withLoop(megabytes: 64) { device, _ in
            let target = try FlashTarget.inspect(device)
            #expect(target.kind == .loop && target.size == 64 << 20 && target.partitionOf == nil && !target.readOnly, "\(target)")
            #expect(target.refusals(imageSize: 32 << 20).isEmpty, "\(target.refusals(imageSize: 32 << 20))")
            #expect(target.refusals(imageSize: 100 << 20) == ["it holds 64.0 MiB, less than the image's 100.0 MiB"])
        }
        try await Self.withLoop(megabytes: 16, options: ["--read-only"]) { device, dir in
            let refusals = try FlashTarget.inspect(device).refusals(imageSize: 1 << 20)
            #expect(refusals.count == 1 && refusals[0].hasPrefix("it is read-only"), "\(refusals)")
            // A regular file is accepted whatever its size (it grows).
            let file = try FlashTarget.inspect(dir + "/disk.img")
            #expect(file.kind == .file && file.refusals(imageSize: 1 << 30).isEmpty)
        }
        #expect(throws: BuildError.self) { try FlashTarget.inspect("/dev/null") }
    }

    @Test("a partition is refused in favour of its disk; a disk with a mounted partition is refused naming the mount")
    func partitionsAndMounts() async throws {
        try await Self.withLoop(megabytes: 64) { device, dir in
            try await TestSupport.check("sgdisk", ["-n", "1:2048:+16M", "-n", "2:0:0", device])
            try await TestSupport.check("partx", ["-a", device])
            let part2 = device + "p2"
            for _ in 0..<100 where !FileManager.default.fileExists(atPath: part2) { try await Task.sleep(for: .milliseconds(100)) }
            #expect(FileManager.default.fileExists(atPath: part2), "the kernel did not add \(part2)")
            let whole = try FlashTarget.inspect(device)
            let name = (device as NSString).lastPathComponent
            #expect(whole.partitions == [name + "p1", name + "p2"], "\(whole)")
            #expect(try FlashTarget.inspect(device + "p1").refusals(imageSize: 1 << 20) == ["it is a partition of \(name), not a whole disk: flash /dev/\(name) itself"])

            try await TestSupport.check("mkfs.ext4", ["-q", part2])
            let mountpoint = dir + "/mnt"
            try FileManager.default.createDirectory(atPath: mountpoint, withIntermediateDirectories: true)
            try await TestSupport.check("mount", [part2, mountpoint])
            defer { ToolRun.cleanUp("umount", [mountpoint]) }
            let refusals = try FlashTarget.inspect(device).refusals(imageSize: 1 << 20)
            #expect(refusals == ["it is mounted: \(name)p2 on \(mountpoint) (the running system's own disk, or one in use)"], "\(refusals)")
        }
    }

    @Test("the disk the running system's root is on is refused")
    func runningRoot() async throws {
        // The block device mounted at / on this machine (here /dev/vda; skipped when / is not on one).
        let mountinfo = try String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)
        guard let line = mountinfo.split(separator: "\n").first(where: { $0.split(separator: " ").dropFirst(4).first == "/" }),
            let dash = line.range(of: " - "), let source = line[dash.upperBound...].split(separator: " ").dropFirst().first, source.hasPrefix("/dev/")
        else {
            print("flash targets: / is not on a block device here; the running-root refusal is covered by the mount refusal")
            return
        }
        var target = try FlashTarget.inspect(String(source))
        if let disk = target.partitionOf { target = try FlashTarget.inspect("/dev/" + disk) }
        let refusals = target.refusals(imageSize: 1 << 20)
        #expect(refusals.contains { $0.hasPrefix("it is mounted:") && $0.contains(" on /") }, "\(source): \(refusals)")
    }

    @Test("a disk under device-mapper, LVM or RAID is refused (a real dmsetup where the kernel has it, else the same decision on a sysfs fixture)")
    func stacked() async throws {
        // This kernel has no device-mapper ("/dev/mapper/control: No such device"): say which ran.
        let real = try await TestSupport.run("dmsetup", ["version"])
        if real.status == 0, FileManager.default.fileExists(atPath: "/dev/mapper/control") {
            try await Self.withLoop(megabytes: 16) { device, _ in
                let name = "mmt-flash-\(UUID().uuidString.prefix(8))"
                try await TestSupport.check("dmsetup", ["create", name, "--table", "0 32768 linear \(device) 0"])
                defer { ToolRun.cleanUp("dmsetup", ["remove", name]) }
                let refusals = try FlashTarget.inspect(device).refusals(imageSize: 1 << 20)
                #expect(refusals.contains { $0.hasPrefix("it is part of a device-mapper, LVM or RAID stack: dm-") }, "\(refusals)")
                print("flash targets: the device-mapper refusal ran on a real dm device")
            }
        } else {
            print("flash targets: no device-mapper in this kernel; the dm refusal ran on a sysfs fixture")
        }
        // A SATA SSD whose second partition is an LVM physical volume, as sysfs and udev lay it out.
        let fixture = try await TestSupport.scratch("sysfs-fixture")
        defer { try? FileManager.default.removeItem(atPath: fixture) }
        let disk = fixture + "/devices/pci0000:00/0000:00:11.0/ata1/host0/target0:0:0/0:0:0:0/block/sdb"
        func file(_ path: String, _ text: String) throws {
            try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try text.write(toFile: path, atomically: true, encoding: .utf8)
        }
        try file(disk + "/size", "3907029168\n")
        try file(disk + "/ro", "0\n")
        try file(disk + "/dev", "8:16\n")
        try file(disk + "/device/model", "KINGSTON SA400M8\n")
        try FileManager.default.createDirectory(atPath: disk + "/holders", withIntermediateDirectories: true)
        for (part, dev) in [("sdb1", "8:17"), ("sdb2", "8:18")] {
            try file(disk + "/\(part)/partition", "1\n")
            try file(disk + "/\(part)/size", "2048\n")
            try file(disk + "/\(part)/dev", "\(dev)\n")
            try FileManager.default.createDirectory(atPath: disk + "/\(part)/holders", withIntermediateDirectories: true)
        }
        try file(disk + "/sdb2/holders/dm-0", "")
        try file(fixture + "/udev/b8:16", "E:ID_SERIAL_SHORT=50026B7784C1F2A3\nE:ID_BUS=ata\n")
        try file(fixture + "/proc/self/mountinfo", "")
        try file(fixture + "/proc/swaps", "Filename Type Size Used Priority\n")
        let target = try FlashTarget.read(path: "/dev/sdb", sysDirectory: disk, proc: fixture + "/proc", udev: fixture + "/udev")
        #expect(target.model == "KINGSTON SA400M8" && target.serial == "50026B7784C1F2A3" && target.transport == "ata" && target.size == 3_907_029_168 * 512)
        #expect(target.summary == "/dev/sdb, 1.8 TiB, KINGSTON SA400M8, serial 50026B7784C1F2A3, ata, partitions sdb1 sdb2", "\(target.summary)")
        #expect(target.refusals(imageSize: 4 << 30) == ["it is part of a device-mapper, LVM or RAID stack: dm-0 on sdb2"])
        // The dm device itself is no disk either.
        let dm = fixture + "/devices/virtual/block/dm-0"
        try file(dm + "/size", "2048\n")
        try file(dm + "/dev", "254:0\n")
        try file(dm + "/dm/name", "vg-root\n")
        let mapped = try FlashTarget.read(path: "/dev/dm-0", sysDirectory: dm, proc: fixture + "/proc", udev: fixture + "/udev")
        #expect(mapped.refusals(imageSize: 1 << 20) == ["it is a device-mapper or RAID device, not a disk"])
    }

    @Test("mm-image disks shows each disk and its verdict")
    func command() async throws {
        try await Self.withLoop(megabytes: 64) { device, dir in
            try "x".write(toFile: dir + "/big.img", atomically: true, encoding: .utf8)
            try await TestSupport.check("truncate", ["-s", "100M", dir + "/big.img"])
            let ok = try await TestSupport.run(TestSupport.mmImage, ["disks", device])
            #expect(ok.status == 0 && ok.stdout.contains("\(device), 64.0 MiB") && ok.stdout.contains("  may be flashed"), "\(ok.combined)")
            let small = try await TestSupport.run(TestSupport.mmImage, ["disks", device, "--image", dir + "/big.img", "--json"])
            #expect(small.status == 0 && small.stdout.contains("less than the image's 100.0 MiB"), "\(small.combined)")
        }
    }
}
