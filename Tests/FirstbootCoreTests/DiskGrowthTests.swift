import Foundation
import FirstbootCore
import Logging
import MicromirrorKit
import MicromirrorTestSupport
import SystemKit
import Testing

/// First-boot disk growth on a small GPT disk file laid out like the image (mm-config, then
/// mm-data last), larger than the table says: what is formatted is decided by libblkid alone.
@Suite("First-boot disk growth", .serialized)
struct DiskGrowthTests {
    /// A 96 MiB disk file whose table covers 40 MiB: mm-config (8 MiB) and mm-data (16 MiB).
    static func disk() async throws -> (dir: String, disk: String) {
        let dir = try ToolRun.scratchDirectory("grow")
        let disk = dir + "/disk.img"
        try await require("truncate", ["-s", "40M", disk])
        try await require("sgdisk", ["-n", "1:1M:+8M", "-c", "1:mm-config", "-n", "2:9M:+16M", "-c", "2:mm-data", disk])
        try await require("truncate", ["-s", "96M", disk])
        return (dir, disk)
    }

    @discardableResult
    static func require(_ tool: String, _ arguments: [String]) async throws -> String {
        let result = try await ToolRun.run(tool, arguments)
        guard result.status == 0 else { throw TestFailure("\(tool) \(arguments.joined(separator: " ")): \(result.combined)") }
        return result.stdout
    }

    static func dataPartition(_ disk: String) throws -> GPT.Entry {
        try #require(try GPT.read(from: RawFile.openForReading(disk)).partition(named: DiskLayout.Label.data))
    }

    static func grow(_ disk: String) async throws -> DiskGrowth.Outcome {
        try await DiskGrowth(disk: disk, runner: CommandRunner(logger: Logger(label: "test"))).run()
    }

    @Test("a blank mm-data is grown and formatted; a second run changes nothing and keeps the files on it")
    func blank() async throws {
        let (dir, disk) = try await Self.disk()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let first = try await Self.grow(disk)
        #expect(first.movedBackupHeader && first.madeFilesystem && first.dataBytesAfter > first.dataBytesBefore, "\(first)")
        let data = try Self.dataPartition(disk)
        #expect(data.offsetInBytes + data.sizeInBytes == (96 << 20) - (1 << 20))
        try "mirrored bytes\n".write(toFile: dir + "/payload", atomically: true, encoding: .utf8)
        try await Self.require("debugfs", ["-w", "-R", "write \(dir)/payload payload", "\(disk)?offset=\(data.offsetInBytes)"])

        let second = try await Self.grow(disk)
        #expect(!second.changedAnything, "\(second)")
        let kept = try await Self.require("debugfs", ["-R", "cat payload", "\(disk)?offset=\(data.offsetInBytes)"])
        #expect(kept.contains("mirrored bytes"), "the second run lost the data: \(kept)")
    }

    @Test("a filesystem already on mm-data is never formatted, whatever the first-boot stamp says")
    func existingFilesystemKept() async throws {
        let (dir, disk) = try await Self.disk()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let data = try Self.dataPartition(disk)
        // An ext4 someone made before (say, the mirror of an earlier life), holding a file.
        try await Self.require("mkfs.ext4", ["-q", "-F", "-L", "mm-data", "-E", "offset=\(data.offsetInBytes)", disk, "\(data.sizeInBytes / 1024)k"])
        try "keep me\n".write(toFile: dir + "/payload", atomically: true, encoding: .utf8)
        try await Self.require("debugfs", ["-w", "-R", "write \(dir)/payload payload", "\(disk)?offset=\(data.offsetInBytes)"])

        // mm-firstboot with no stamp on mm-config (a first boot, or a lost stamp).
        let state = dir + "/state"
        try FileManager.default.createDirectory(atPath: state, withIntermediateDirectories: true)
        var options = Firstboot.Options()
        options.config = dir + "/absent.yaml"
        options.state = state
        options.root = dir + "/root"
        options.disk = disk
        options.steps = [.disk]
        let report = try await Firstboot(options: options, runner: CommandRunner(logger: Logger(label: "test"))).run()
        #expect(!report.notes.joined().contains("made ext4"), "\(report.notes)")
        #expect(!report.problems.contains { $0.hasPrefix("disk:") }, "\(report.problems)")
        let kept = try await Self.require("debugfs", ["-R", "cat payload", "\(disk)?offset=\(data.offsetInBytes)"])
        #expect(kept.contains("keep me"), "mm-data was formatted over: \(kept)")
        #expect(FileManager.default.fileExists(atPath: state + "/firstboot.done"))
    }

    @Test("a filesystem is made at an offset only in an image file or on a loop device, never on another device")
    func offsetOnlyOnImages() async throws {
        let (dir, disk) = try await Self.disk()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(DiskGrowth.mayFormatAtOffset(disk))
        #expect(!DiskGrowth.mayFormatAtOffset("/dev/null"), "a character device")
        #expect(!DiskGrowth.mayFormatAtOffset(dir + "/missing"))
        let loop = try await Self.require("losetup", ["--find", "--show", disk]).trimmingCharacters(in: .whitespacesAndNewlines)
        defer { ToolRun.cleanUp("losetup", ["-d", loop]) }
        #expect(DiskGrowth.mayFormatAtOffset(loop), "\(loop) is a loop device")
        // A block device that is not a loop device (a RAM disk node made for the test, major 1).
        let ram = dir + "/ram-node"
        try await Self.require("mknod", [ram, "b", "1", "0"])
        #expect(!DiskGrowth.mayFormatAtOffset(ram), "a real block device must never be formatted at an offset")
    }
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
