import Foundation
import MicromirrorKit
import SystemKit

/// A disk the NOC is about to flash, as the kernel describes it (sysfs, `/proc/self/mountinfo`,
/// `/proc/swaps`, udev's database), and whether writing it is safe: writing the wrong disk is the
/// worst mistake the project can make, so every reason to refuse is found and named before a
/// byte is written. A regular file (image work, tests) has none of these facts and is accepted.
public struct FlashTarget: Sendable, Equatable, Codable {
    public enum Kind: String, Sendable, Equatable, Codable {
        /// A regular file: an image being prepared, a test.
        case file
        /// A loop device (tests, image work).
        case loop
        /// A real disk.
        case disk
    }

    /// The path as given (`/dev/disk/by-id/ata-…` stays readable in messages).
    public var path: String
    /// The kernel's name: `sdb`, `nvme0n1`, `loop3`, `sdb1` (nil for a file).
    public var name: String?
    public var kind: Kind
    public var size: Int64
    public var readOnly = false
    /// Set when `path` is a partition, not a whole disk.
    public var partitionOf: String?
    /// The disk's partitions (`sdb1`, `sdb2`).
    public var partitions: [String] = []
    /// What sits on top of it: device-mapper (LVM, LUKS, multipath) or md RAID, as `dm-0 on sdb2`.
    public var holders: [String] = []
    /// The device is itself a device-mapper or md device (`dm-0`, `md127`).
    public var isStacked = false
    /// Its or its partitions' mounts, as `sdb1 on /boot`.
    public var mounts: [String] = []
    /// Its or its partitions' swap areas.
    public var swaps: [String] = []
    public var model: String?
    public var serial: String?
    /// `ata`, `usb`, `nvme`, `virtio`, … (udev's ID_BUS, else read from the sysfs path).
    public var transport: String?

    public init(path: String, name: String?, kind: Kind, size: Int64) {
        self.path = path
        self.name = name
        self.kind = kind
        self.size = size
    }

    /// Why `path` must not be written with an image of `imageSize` bytes; empty when it may.
    public func refusals(imageSize: Int64) -> [String] {
        var reasons: [String] = []
        if let disk = partitionOf { reasons.append("it is a partition of \(disk), not a whole disk: flash /dev/\(disk) itself") }
        if isStacked { reasons.append("it is a device-mapper or RAID device, not a disk") }
        if readOnly { reasons.append("it is read-only (a write-protect switch, or the kernel's ro flag: blockdev --setrw)") }
        if kind != .file, size < imageSize {
            reasons.append("it holds \(ByteSize.format(size)), less than the image's \(ByteSize.format(imageSize))")
        }
        if !mounts.isEmpty {
            let shown = mounts.prefix(4).joined(separator: ", ") + (mounts.count > 4 ? " and \(mounts.count - 4) more" : "")
            reasons.append("it is mounted: \(shown) (the running system's own disk, or one in use)")
        }
        if !swaps.isEmpty { reasons.append("it is in use as swap: \(swaps.joined(separator: ", "))") }
        if !holders.isEmpty { reasons.append("it is part of a device-mapper, LVM or RAID stack: \(holders.joined(separator: ", "))") }
        return reasons
    }

    /// One line for the confirmation: what the engineer must recognise before saying yes.
    public var summary: String {
        var parts = [path + (name.map { $0 == (path as NSString).lastPathComponent ? "" : " (\($0))" } ?? ""), ByteSize.format(size)]
        if let model { parts.append(model) }
        if let serial { parts.append("serial \(serial)") }
        if let transport { parts.append(transport) }
        parts.append(partitions.isEmpty ? "no partitions" : "partitions \(partitions.joined(separator: " "))")
        return parts.joined(separator: ", ")
    }

    /// The facts about `path` from the running kernel.
    public static func inspect(_ path: String, sys: String = "/sys", proc: String = "/proc", udev: String = "/run/udev/data") throws -> FlashTarget {
        var info = stat()
        guard stat(path, &info) == 0 else {
            throw BuildError(stage: "flash", "\(path): \(String(cString: strerror(errno))); name a disk such as /dev/sdb or /dev/disk/by-id/…")
        }
        switch info.st_mode & S_IFMT {
        case S_IFREG:
            return FlashTarget(path: path, name: nil, kind: .file, size: Int64(info.st_size))
        case S_IFBLK:
            let number = Self.deviceNumber(info.st_rdev)
            return try read(path: path, sysDirectory: sys + "/dev/block/\(number.major):\(number.minor)", proc: proc, udev: udev)
        default:
            throw BuildError(stage: "flash", "\(path) is neither a block device nor a regular file")
        }
    }

    /// The facts from a device's sysfs directory (`/sys/dev/block/MAJ:MIN`, or a fixture laid
    /// out the same way), the mount and swap tables under `proc`, and udev's database.
    public static func read(path: String, sysDirectory: String, proc: String = "/proc", udev: String = "/run/udev/data") throws -> FlashTarget {
        let fm = FileManager.default
        let resolved = URL(fileURLWithPath: sysDirectory).resolvingSymlinksInPath().path
        guard let size = text(resolved + "/size").flatMap(Int64.init) else {
            throw BuildError(stage: "flash", "\(path): the kernel says nothing of it at \(sysDirectory)")
        }
        let name = (resolved as NSString).lastPathComponent
        var target = FlashTarget(
            path: path, name: name, kind: name.hasPrefix("loop") ? .loop : .disk, size: size * 512
        )
        target.readOnly = text(resolved + "/ro") == "1"
        if fm.fileExists(atPath: resolved + "/partition") {
            target.partitionOf = ((resolved as NSString).deletingLastPathComponent as NSString).lastPathComponent
        }
        target.isStacked = fm.fileExists(atPath: resolved + "/dm") || fm.fileExists(atPath: resolved + "/md")
        target.partitions = ((try? fm.contentsOfDirectory(atPath: resolved)) ?? []).filter { fm.fileExists(atPath: resolved + "/" + $0 + "/partition") }.sorted()
        // The disk itself and each partition: what holds them, where they are mounted.
        var numbers: [String: String] = [:]
        for part in [""] + target.partitions {
            let directory = part.isEmpty ? resolved : resolved + "/" + part
            let label = part.isEmpty ? name : part
            for holder in ((try? fm.contentsOfDirectory(atPath: directory + "/holders")) ?? []).sorted() {
                target.holders.append("\(holder) on \(label)")
            }
            if let number = text(directory + "/dev") { numbers[number] = label }
        }
        for line in (text(proc + "/self/mountinfo") ?? "").split(separator: "\n") {
            let fields = line.split(separator: " ")
            guard fields.count > 4, let label = numbers[String(fields[2])] else { continue }
            target.mounts.append("\(label) on \(Self.unescape(fields[4]))")
        }
        for line in (text(proc + "/swaps") ?? "").split(separator: "\n").dropFirst() {
            guard let device = line.split(separator: " ").first else { continue }
            var info = stat()
            guard stat(String(device), &info) == 0, info.st_mode & S_IFMT == S_IFBLK else { continue }
            let number = Self.deviceNumber(info.st_rdev)
            if let label = numbers["\(number.major):\(number.minor)"] { target.swaps.append("\(label) (\(device))") }
        }
        // udev knows the serial and the bus; sysfs the model.
        let dev = text(resolved + "/dev") ?? ""
        var udevFacts: [String: String] = [:]
        for line in (text(udev + "/b" + dev) ?? "").split(separator: "\n") where line.hasPrefix("E:") {
            let pair = line.dropFirst(2).split(separator: "=", maxSplits: 1)
            if pair.count == 2 { udevFacts[String(pair[0])] = String(pair[1]) }
        }
        target.model = text(resolved + "/device/model") ?? udevFacts["ID_MODEL"]
        target.serial = udevFacts["ID_SERIAL_SHORT"] ?? text(resolved + "/device/serial")
        target.transport = udevFacts["ID_BUS"] ?? ["usb", "nvme", "virtio", "ata", "mmc"].first { resolved.contains("/" + $0) }
        return target
    }

    /// A file's text, trimmed; nil when it cannot be read or is empty.
    static func text(_ path: String) -> String? {
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        let text = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        return text.isEmpty ? nil : text
    }

    /// `dev_t` to major and minor (glibc's encoding: the macros are not importable).
    static func deviceNumber(_ rdev: dev_t) -> (major: UInt64, minor: UInt64) {
        let value = UInt64(rdev)
        let major = ((value >> 8) & 0xfff) | ((value >> 32) & ~UInt64(0xfff))
        let minor = (value & 0xff) | ((value >> 12) & ~UInt64(0xff))
        return (major, minor)
    }

    /// mountinfo escapes spaces and the like as `\040`.
    static func unescape(_ field: Substring) -> String {
        var result = ""
        var index = field.startIndex
        while index < field.endIndex {
            if field[index] == "\\", let end = field.index(index, offsetBy: 4, limitedBy: field.endIndex), let code = UInt8(field[field.index(after: index)..<end], radix: 8) {
                result.append(Character(UnicodeScalar(code)))
                index = end
            } else {
                result.append(field[index])
                index = field.index(after: index)
            }
        }
        return result
    }
}
