import Foundation
import Logging
import MicromirrorKit
import SystemKit

/// First boot on a new SSD: move the backup GPT to the real end of the disk, grow `mm-data` to
/// fill it, and make its filesystem. Idempotent: a second run finds nothing to do.
///
/// Whether to make a filesystem is decided from what libblkid finds on `mm-data` itself, never
/// from a stamp elsewhere: a partition holding any filesystem signature is never formatted, so a
/// lost stamp cannot cost the mirror.
public struct DiskGrowth {
    public var disk: String
    public var runner: CommandRunner

    public init(disk: String, runner: CommandRunner) {
        self.disk = disk
        self.runner = runner
    }

    public struct Outcome: Sendable, Equatable, CustomStringConvertible {
        public var movedBackupHeader: Bool
        public var dataBytesBefore: Int64
        public var dataBytesAfter: Int64
        public var madeFilesystem: Bool
        public var description: String {
            var parts: [String] = []
            if movedBackupHeader { parts.append("moved the backup GPT to the end of the disk") }
            if dataBytesAfter != dataBytesBefore {
                parts.append("grew mm-data from \(ByteSize.format(dataBytesBefore)) to \(ByteSize.format(dataBytesAfter))")
            }
            if madeFilesystem { parts.append("made ext4 on mm-data") }
            return parts.isEmpty ? "disk already laid out" : parts.joined(separator: ", ")
        }
        public var changedAnything: Bool { movedBackupHeader || madeFilesystem || dataBytesAfter != dataBytesBefore }
    }

    /// Grows the table and `mm-data`; makes the filesystem only when libblkid finds none there.
    public func run() async throws -> Outcome {
        let file = try RawFile.openForWriting(disk)
        let size = try file.size()
        var gpt = try GPT.read(from: file)
        guard let dataIndex = gpt.entries.firstIndex(where: { $0.isUsed && $0.name == DiskLayout.Label.data }) else {
            throw GPTError("\(disk) has no \(DiskLayout.Label.data) partition")
        }
        let data = gpt.entries[dataIndex]
        guard gpt.partitions.allSatisfy({ $0.lastLBA <= data.lastLBA }) else {
            throw GPTError("\(DiskLayout.Label.data) is not the last partition on \(disk); refusing to grow it")
        }
        let before = data.sizeInBytes
        var moved = false
        if gpt.backupLBA != size / GPT.sectorSize - 1 {
            gpt.relocateBackup(deviceBytes: size)
            moved = true
        }
        // Keep the 1 MiB alignment of the layout: end on a MiB boundary below the backup table.
        let usableEnd = (gpt.lastUsableLBA + 1) * GPT.sectorSize
        let newLast = DiskLayout.alignDown(usableEnd) / GPT.sectorSize - 1
        if newLast > data.lastLBA { gpt.entries[dataIndex].lastLBA = newLast }
        let after = gpt.entries[dataIndex].sizeInBytes
        if moved || after != before {
            try gpt.write(to: file)
            try file.sync()
            // Tell the kernel about the new size; on a disk in use this is all it takes.
            do {
                try await runner.run(Tool("partx", package: "util-linux"), ["--update", "--nr", "\(dataIndex + 1)", disk])
            } catch {
                runner.logger.warning("partx could not update the kernel's view", metadata: ["disk": "\(disk)", "error": "\(error)"])
            }
        }
        var made = false
        let entry = gpt.entries[dataIndex]
        // A probe that finds conflicting signatures throws: then nothing is formatted either.
        let existing = try BlockProbe(path: disk, offset: entry.offsetInBytes, length: entry.sizeInBytes).superblocks()
        if existing.type == nil {
            try await makeExt4(entry: entry, number: dataIndex + 1)
            made = true
        }
        return Outcome(movedBackupHeader: moved, dataBytesBefore: before, dataBytesAfter: after, madeFilesystem: made)
    }

    /// mkfs.ext4 on the partition's own device when the kernel has one of the right size, else,
    /// only for an image file or a loop device (no partition nodes), on the whole at the
    /// partition's offset. A real disk without its partition device is an error: a wrong offset
    /// there would format someone's data.
    private func makeExt4(entry: GPT.Entry, number: Int) async throws {
        let common = ["-F", "-q", "-L", DiskLayout.Label.data, "-m", "0", "-E", "lazy_itable_init=1,lazy_journal_init=1"]
        if let device = partitionDevice(number: number),
            let partSize = try? RawFile.openForReading(device).size(), partSize == entry.sizeInBytes
        {
            try await runner.run(Tool("mkfs.ext4", package: "e2fsprogs"), common + [device])
        } else {
            guard Self.mayFormatAtOffset(disk) else {
                throw GPTError("\(disk) has no partition device for \(DiskLayout.Label.data) (partition \(number)) of the right size; refusing to make a filesystem at an offset of a real disk. Check that the kernel sees the partition (partx --update \(disk)), then reboot.")
            }
            try await runner.run(
                Tool("mkfs.ext4", package: "e2fsprogs"),
                ["-F", "-q", "-L", DiskLayout.Label.data, "-m", "0", "-E", "offset=\(entry.offsetInBytes),lazy_itable_init=1,lazy_journal_init=1", disk, "\(entry.sizeInBytes / 1024)k"]
            )
        }
    }

    /// Whether `path` is an image file or a loop device: the only places a filesystem may be made at
    /// an offset (tests and image work); never a real disk.
    public static func mayFormatAtOffset(_ path: String) -> Bool {
        var info = stat()
        guard stat(path, &info) == 0 else { return false }
        switch info.st_mode & S_IFMT {
        case S_IFREG: return true
        case S_IFBLK:
            // glibc's major() is a macro Swift cannot import; this is its bit layout.
            let device = UInt64(info.st_rdev)
            let major = ((device >> 8) & 0xfff) | ((device >> 32) & ~0xfff)
            return major == 7  // loop
        default: return false
        }
    }

    /// `/dev/<name>` of partition `number` of `disk`, from sysfs.
    func partitionDevice(number: Int) -> String? {
        let resolved = (try? FileManager.default.destinationOfSymbolicLink(atPath: disk)).map {
            $0.hasPrefix("/") ? $0 : ((disk as NSString).deletingLastPathComponent as NSString).appendingPathComponent($0)
        } ?? disk
        let name = (resolved as NSString).lastPathComponent
        let base = "/sys/class/block/\(name)"
        for child in (try? FileManager.default.contentsOfDirectory(atPath: base)) ?? [] where child.hasPrefix(name) {
            let text = try? String(contentsOfFile: "\(base)/\(child)/partition", encoding: .utf8)
            if text?.trimmingCharacters(in: .whitespacesAndNewlines) == "\(number)", FileManager.default.fileExists(atPath: "/dev/\(child)") {
                return "/dev/\(child)"
            }
        }
        return nil
    }

    /// The disk that holds the partition labelled `label` (e.g. mm-config), via udev's symlink and sysfs.
    public static func diskHolding(label: String) -> String? {
        let link = "/dev/disk/by-partlabel/\(label)"
        guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: link) else { return nil }
        let partition = (target as NSString).lastPathComponent
        guard let sys = try? FileManager.default.destinationOfSymbolicLink(atPath: "/sys/class/block/\(partition)") else { return nil }
        // .../block/sda/sda4 → sda
        let parent = ((sys as NSString).deletingLastPathComponent as NSString).lastPathComponent
        return "/dev/\(parent)"
    }
}
