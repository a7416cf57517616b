import SystemKit

/// A GUID Partition Table read from, and written back to, an image file or a disk.
///
/// libparted 3.5 lays out the partitions, but it cannot set DPS type GUIDs nor choose the disk and
/// partition GUIDs; this type edits those fields and rewrites both copies with fresh CRCs.
public struct GPT: Sendable {
    public static let sectorSize: Int64 = 512

    /// One 128-byte partition entry.
    public struct Entry: Sendable, Equatable {
        public var typeGUID: GUID
        public var uniqueGUID: GUID
        public var firstLBA: Int64
        public var lastLBA: Int64
        public var attributes: UInt64
        public var name: String

        public var isUsed: Bool { typeGUID != .zero }
        public var sizeInBytes: Int64 { (lastLBA - firstLBA + 1) * GPT.sectorSize }
        public var offsetInBytes: Int64 { firstLBA * GPT.sectorSize }
    }

    public var diskGUID: GUID
    public var currentLBA: Int64
    public var backupLBA: Int64
    public var firstUsableLBA: Int64
    public var lastUsableLBA: Int64
    public var entriesLBA: Int64
    public var entrySize: Int
    /// Every slot of the entry array, used or not.
    public var entries: [Entry]

    /// The used entries, in table order.
    public var partitions: [Entry] { entries.filter(\.isUsed) }

    /// Finds the partition whose GPT name is `label`.
    public func partition(named label: String) -> Entry? { partitions.first { $0.name == label } }

    /// Reads and checks the primary GPT (header CRC, entry array CRC).
    public static func read(from file: RawFile) throws -> GPT {
        let header = try file.read(count: 512, at: sectorSize)
        guard Array(header[0..<8]) == Array("EFI PART".utf8) else {
            throw GPTError("\(file.path) has no GPT (no \"EFI PART\" signature at LBA 1)")
        }
        let headerSize = Int(header.le32(12))
        guard headerSize >= 92, headerSize <= 512 else { throw GPTError("\(file.path): GPT header size \(headerSize) is invalid") }
        var check = Array(header[0..<headerSize])
        check.replaceSubrange(16..<20, with: [0, 0, 0, 0])
        guard CRC32.checksum(check) == header.le32(16) else { throw GPTError("\(file.path): GPT header CRC mismatch") }
        let count = Int(header.le32(80))
        let entrySize = Int(header.le32(84))
        guard entrySize >= 128, count > 0, count <= 1024 else { throw GPTError("\(file.path): GPT entry array is invalid") }
        let entriesLBA = Int64(header.le64(72))
        let array = try file.read(count: count * entrySize, at: entriesLBA * sectorSize)
        guard CRC32.checksum(array) == header.le32(88) else { throw GPTError("\(file.path): GPT partition array CRC mismatch") }
        var entries: [Entry] = []
        for index in 0..<count {
            let e = Array(array[(index * entrySize)..<(index * entrySize + entrySize)])
            var units: [UInt16] = []
            for i in stride(from: 56, to: 128, by: 2) {
                let unit = UInt16(e[i]) | UInt16(e[i + 1]) << 8
                if unit == 0 { break }
                units.append(unit)
            }
            entries.append(
                Entry(
                    typeGUID: GUID(mixedEndian: e[0..<16]),
                    uniqueGUID: GUID(mixedEndian: e[16..<32]),
                    firstLBA: Int64(e.le64(32)),
                    lastLBA: Int64(e.le64(40)),
                    attributes: e.le64(48),
                    name: String(decoding: units, as: UTF16.self)
                )
            )
        }
        return GPT(
            diskGUID: GUID(mixedEndian: header[56..<72]),
            currentLBA: Int64(header.le64(24)),
            backupLBA: Int64(header.le64(32)),
            firstUsableLBA: Int64(header.le64(40)),
            lastUsableLBA: Int64(header.le64(48)),
            entriesLBA: entriesLBA,
            entrySize: entrySize,
            entries: entries
        )
    }

    /// The serialised entry array.
    func entryArray() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(entries.count * entrySize)
        for entry in entries {
            var e = [UInt8](repeating: 0, count: entrySize)
            if entry.isUsed {
                e.replaceSubrange(0..<16, with: entry.typeGUID.mixedEndian)
                e.replaceSubrange(16..<32, with: entry.uniqueGUID.mixedEndian)
                e.putLE64(UInt64(entry.firstLBA), at: 32)
                e.putLE64(UInt64(entry.lastLBA), at: 40)
                e.putLE64(entry.attributes, at: 48)
                for (i, unit) in entry.name.utf16.prefix(36).enumerated() {
                    e[56 + 2 * i] = UInt8(unit & 0xff)
                    e[57 + 2 * i] = UInt8(unit >> 8)
                }
            }
            out += e
        }
        return out
    }

    /// One header sector for the copy at `myLBA` whose entries start at `entriesAt`.
    func headerSector(myLBA: Int64, alternateLBA: Int64, entriesAt: Int64, arrayCRC: UInt32) -> [UInt8] {
        var h = [UInt8](repeating: 0, count: 512)
        h.replaceSubrange(0..<8, with: Array("EFI PART".utf8))
        h.putLE32(0x0001_0000, at: 8)
        h.putLE32(92, at: 12)
        h.putLE64(UInt64(myLBA), at: 24)
        h.putLE64(UInt64(alternateLBA), at: 32)
        h.putLE64(UInt64(firstUsableLBA), at: 40)
        h.putLE64(UInt64(lastUsableLBA), at: 48)
        h.replaceSubrange(56..<72, with: diskGUID.mixedEndian)
        h.putLE64(UInt64(entriesAt), at: 72)
        h.putLE32(UInt32(entries.count), at: 80)
        h.putLE32(UInt32(entrySize), at: 84)
        h.putLE32(arrayCRC, at: 88)
        h.putLE32(CRC32.checksum(h[0..<92]), at: 16)
        return h
    }

    /// Writes the primary copy at LBA 1 and the backup at `backupLBA`, both with fresh CRCs.
    public func write(to file: RawFile) throws {
        let array = entryArray()
        let crc = CRC32.checksum(array)
        let arraySectors = Int64((array.count + 511) / 512)
        let backupEntries = backupLBA - arraySectors
        try file.write(headerSector(myLBA: 1, alternateLBA: backupLBA, entriesAt: entriesLBA, arrayCRC: crc), at: GPT.sectorSize)
        try file.write(array, at: entriesLBA * GPT.sectorSize)
        try file.write(array, at: backupEntries * GPT.sectorSize)
        try file.write(headerSector(myLBA: backupLBA, alternateLBA: 1, entriesAt: backupEntries, arrayCRC: crc), at: backupLBA * GPT.sectorSize)
    }

    /// Moves the backup copy to the last sector of a device of `deviceBytes` and extends the usable
    /// area to match (what first boot does on an SSD larger than the image). The old backup is not erased.
    public mutating func relocateBackup(deviceBytes: Int64) {
        let arraySectors = Int64((entries.count * entrySize + 511) / 512)
        backupLBA = deviceBytes / GPT.sectorSize - 1
        lastUsableLBA = backupLBA - arraySectors - 1
    }
}
