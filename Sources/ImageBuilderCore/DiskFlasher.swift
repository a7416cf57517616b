import Foundation
import MicromirrorKit
import SystemKit

/// Writes a release image onto one drive the way the NOC needs it: only the blocks the block map
/// says hold data, in large direct (page-cache-bypassing) writes; the rest of the drive discarded so
/// nothing of its previous life lies where the filesystems expect zeros; then every written range
/// read back from the drive itself (`O_DIRECT`, never the page cache: Etcher's old pitfall) and
/// hashed against the block map. A mismatch names the offset and fails the drive.
public struct DiskFlasher: Sendable {
    public var image: String
    public var blockMap: BlockMap.Parsed
    /// Bytes per write and per read-back.
    public var chunkSize = 4 << 20
    /// Where the drive cannot discard, write zeros over the unmapped blocks instead (slow on a big drive).
    public var zeroUnmapped = false
    /// Skip the read-back (`--no-verify`).
    public var verify = true
    public var progress: (@Sendable (_ stage: String, _ done: Int64, _ total: Int64) -> Void)?
    /// A seam for tests: runs between the write and the read-back (a byte changed behind the writer's back).
    public var betweenWriteAndVerify: (@Sendable () throws -> Void)?

    public init(image: String, blockMap: BlockMap.Parsed) {
        self.image = image
        self.blockMap = blockMap
    }

    /// What one drive got.
    public struct Written: Sendable, Equatable {
        public var mappedBytes: Int64
        /// Bytes discarded (or zeroed) outside the mapped ranges.
        public var clearedBytes: Int64
        /// How the unmapped blocks were cleared: `discard`, `zeroes`, `holes` (a file), or why not.
        public var cleared: String
        public var verified: Bool
    }

    /// The ioctl that discards a byte range of a block device (`_IO(0x12, 119)`).
    static let blkDiscard: UInt = 0x1277

    /// Writes the image onto `target` (see `FlashTarget`; its checks come first), verifies it.
    public func write(to target: FlashTarget) throws -> Written {
        let source = try RawFile.openForReading(image)
        guard try source.size() == blockMap.imageSize else {
            throw BuildError(stage: "flash", "\(image) is \(try source.size()) bytes, its block map says \(blockMap.imageSize): not the image the map was made for")
        }
        let device: RawFile
        if target.kind == .file {
            // A file: emptied and sized, so every byte the map does not name is a hole, that is zeros.
            let plain = try RawFile.openForWriting(target.path, create: true)
            try plain.truncate(to: 0)
            try plain.truncate(to: blockMap.imageSize)
            if let direct = try? RawFile.openDirect(target.path, writing: true) { device = direct } else { device = plain }
        } else {
            device = try RawFile.openDirect(target.path, writing: true)
        }
        let total = blockMap.mappedBytes
        var done: Int64 = 0
        let writer = OverlappedWriter(file: device, blockSize: chunkSize)
        for range in blockMap.ranges {
            let hasher = SHA256Hasher()
            var offset = range.offset
            while offset < range.offset + range.length {
                let length = Int(min(Int64(chunkSize), range.offset + range.length - offset))
                let buffer = try writer.buffer()
                let slice = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<length])
                guard try source.read(into: slice, at: offset) == length else {
                    throw BuildError(stage: "flash", "\(image) ended before offset \(offset + Int64(length))")
                }
                hasher.update(UnsafeRawBufferPointer(slice))
                // Direct I/O writes whole 4 KiB blocks: the image's last block is padded with zeros.
                let padded = (length + 4095) / 4096 * 4096
                if padded > length { UnsafeMutableRawBufferPointer(rebasing: buffer[length..<padded]).initializeMemory(as: UInt8.self, repeating: 0) }
                writer.write(length: padded, at: offset)
                offset += Int64(length)
                done += Int64(length)
                progress?("write", done, total)
            }
            // The image itself must be what the map says before the drive is trusted with it.
            guard hasher.finalizeHex() == range.sha256 else {
                try? writer.finish()
                throw BuildError(stage: "flash", "\(image) differs from its block map at offset \(range.offset) (\(range.length) bytes): the image is damaged; nothing on \(target.path) can be trusted")
            }
        }
        try writer.finish()
        let (clearedBytes, cleared) = try clearUnmapped(device, target: target)
        try device.sync()
        if target.kind == .file, try RawFile.openForReading(target.path).size() > blockMap.imageSize {
            // The padding of the last block must not grow a file image.
            try RawFile.openForWriting(target.path).truncate(to: blockMap.imageSize)
        }
        try betweenWriteAndVerify?()
        if verify { try readBack(target) }
        return Written(mappedBytes: total, clearedBytes: clearedBytes, cleared: cleared, verified: verify)
    }

    /// Moves the image's backup GPT (at the image's end) to the drive's last sector and widens the
    /// usable area to match, as `sgdisk -e` does but without its second of settling; the old backup
    /// header is zeroed so nothing mistakes it for a table. Nothing to do on a drive the image's size.
    public func spanDrive(_ target: FlashTarget) throws {
        guard target.kind != .file, target.size > blockMap.imageSize else { return }
        let device = try RawFile.openForWriting(target.path)
        var gpt = try GPT.read(from: device)
        let oldBackup = gpt.backupLBA
        gpt.relocateBackup(deviceBytes: target.size)
        try gpt.write(to: device)
        try device.write([UInt8](repeating: 0, count: Int(GPT.sectorSize)), at: oldBackup * GPT.sectorSize)
        try device.sync()
    }

    /// The unmapped gaps of the image, and the drive beyond the image's end.
    func gaps(deviceSize: Int64) -> [(Int64, Int64)] {
        var gaps: [(Int64, Int64)] = []
        var position: Int64 = 0
        for range in blockMap.ranges {
            if range.offset > position { gaps.append((position, range.offset - position)) }
            position = max(position, (range.offset + range.length + 4095) / 4096 * 4096)
        }
        if deviceSize > position { gaps.append((position, deviceSize - position)) }
        return gaps
    }

    private func clearUnmapped(_ device: RawFile, target: FlashTarget) throws -> (Int64, String) {
        guard target.kind != .file else { return (0, "holes") }
        let gaps = gaps(deviceSize: target.size)
        let total = gaps.reduce(0) { $0 + $1.1 }
        var cleared: Int64 = 0
        for (offset, length) in gaps {
            var range: [UInt64] = [UInt64(offset), UInt64(length)]
            let result = range.withUnsafeMutableBytes { ioctl(device.descriptor, Self.blkDiscard, $0.baseAddress!) }
            if result != 0 {
                let why = String(cString: strerror(errno))
                guard zeroUnmapped else { return (cleared, "not cleared: the drive cannot discard (\(why)); --zero-unmapped writes zeros instead") }
                try zero(device, offset: offset, length: length)
            }
            cleared += length
            progress?("clear", cleared, total)
        }
        return (cleared, zeroUnmapped ? "discard or zeroes" : "discard")
    }

    private func zero(_ device: RawFile, offset: Int64, length: Int64) throws {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: chunkSize, alignment: 4096)
        defer { buffer.deallocate() }
        buffer.initializeMemory(as: UInt8.self, repeating: 0)
        var position = offset
        while position < offset + length {
            let count = Int(min(Int64(chunkSize), offset + length - position))
            try device.write(UnsafeRawBufferPointer(rebasing: buffer[0..<count]), at: position)
            position += Int64(count)
        }
    }

    /// Re-verifies a drive flashed earlier: every mapped range but those the flash changed on
    /// purpose after its own verification (the GPT's headers and tables, moved to span the drive,
    /// and `mm-config`, which got the node file) hashes as the block map says.
    public func check(_ target: FlashTarget) throws {
        let gpt = try GPT.read(from: try RawFile.openForReading(image))
        let first = gpt.partitions.map(\.offsetInBytes).min() ?? (1 << 20)
        let last = gpt.partitions.map { $0.offsetInBytes + $0.sizeInBytes }.max() ?? blockMap.imageSize
        var changed: [Swift.Range<Int64>] = [0..<first, last..<blockMap.imageSize]
        if let config = gpt.partition(named: DiskLayout.Label.config) { changed.append(config.offsetInBytes..<(config.offsetInBytes + config.sizeInBytes)) }
        var kept = self
        kept.blockMap = BlockMap.Parsed(
            imageSize: blockMap.imageSize,
            ranges: blockMap.ranges.compactMap { range in
                // A range is checked whole or not at all (its hash covers all of it).
                changed.contains { $0.overlaps(range.offset..<(range.offset + range.length)) } ? nil : range
            }
        )
        guard kept.blockMap.mappedBytes > 0 else { throw BuildError(stage: "check", "nothing of \(image) is left to compare once the GPT and mm-config are set aside") }
        try kept.readBack(target)
    }

    /// Where in `range` the drive first differs from the image (nil when it does not: the image
    /// itself changed), for the message.
    func firstDifference(_ device: RawFile, range: BlockMap.Range) throws -> Int64? {
        let source = try RawFile.openForReading(image)
        let mine = UnsafeMutableRawBufferPointer.allocate(byteCount: chunkSize, alignment: 4096)
        let theirs = UnsafeMutableRawBufferPointer.allocate(byteCount: chunkSize, alignment: 4096)
        defer {
            mine.deallocate()
            theirs.deallocate()
        }
        var offset = range.offset
        while offset < range.offset + range.length {
            let length = Int(min(Int64(chunkSize), range.offset + range.length - offset))
            let aligned = (length + 4095) / 4096 * 4096
            _ = try device.read(into: UnsafeMutableRawBufferPointer(rebasing: mine[0..<aligned]), at: offset)
            _ = try source.read(into: UnsafeMutableRawBufferPointer(rebasing: theirs[0..<length]), at: offset)
            for index in 0..<length where mine[index] != theirs[index] { return offset + Int64(index) }
            offset += Int64(length)
        }
        return nil
    }

    /// Reads every mapped range back from the drive, bypassing the page cache, and checks its hash.
    public func readBack(_ target: FlashTarget) throws {
        let device: RawFile
        if let direct = try? RawFile.openDirect(target.path, writing: false) { device = direct } else { device = try RawFile.openForReading(target.path) }
        let total = blockMap.mappedBytes
        var done: Int64 = 0
        for range in blockMap.ranges {
            // The next block is read while this one is hashed: the device and the CPU both stay busy.
            let hasher = SHA256Hasher()
            do {
                try ReadAhead(file: device, start: range.offset, length: range.length, blockSize: chunkSize).forEach { block, _ in
                    hasher.update(block)
                    done += Int64(block.count)
                    progress?("verify", done, total)
                }
            } catch {
                throw BuildError(stage: "verify", "\(target.path): \(error), inside the image's range at offset \(range.offset)")
            }
            guard hasher.finalizeHex() == range.sha256 else {
                let first = (try? firstDifference(device, range: range)).flatMap { $0 }.map { ", first difference at byte \($0)" } ?? ""
                throw BuildError(
                    stage: "verify",
                    "\(target.path) does not hold what was written in the range at offset \(range.offset) (\(range.length) bytes)\(first): the drive failed verification; do not ship it"
                )
            }
        }
    }
}
