import Foundation
import MicromirrorKit
import SystemKit

/// Writes the GPT disk image: libparted lays out the partitions, then the DPS type GUIDs and the
/// seeded disk and partition GUIDs are set (libparted 3.5 can do neither), then each partition's
/// content is copied in, keeping holes so the image stays sparse.
struct DiskAssembler {
    var layout: DiskLayout
    var seed: String

    func guid(for label: String) -> GUID { GUID.derived(seed: seed, purpose: "partition:\(label)") }
    var diskGUID: GUID { GUID.derived(seed: seed, purpose: "disk") }

    func write(to path: String, contents: [String: String], progress: BuildProgress) throws {
        try? FileManager.default.removeItem(atPath: path)
        do {
            let file = try RawFile.openForWriting(path, create: true, truncate: true)
            try file.truncate(to: layout.diskSize)
        }
        let requests = layout.partitions.map {
            PartitionRequest(
                name: $0.label, startSector: $0.offset / GPT.sectorSize, sectorCount: $0.size / GPT.sectorSize,
                isESP: $0.type == PartitionType.esp
            )
        }
        try PartitionTable.createGPT(on: path, partitions: requests)

        let file = try RawFile.openForWriting(path)
        var gpt = try GPT.read(from: file)
        gpt.diskGUID = diskGUID
        for index in gpt.entries.indices where gpt.entries[index].isUsed {
            let name = gpt.entries[index].name
            guard let planned = layout.partition(name) else {
                throw BuildError(stage: "disk", "libparted wrote an unexpected partition \(name)")
            }
            gpt.entries[index].typeGUID = planned.type
            gpt.entries[index].uniqueGUID = guid(for: name)
            // Flags libparted derived from the ESP flag are replaced by the DPS type; clear attributes.
            gpt.entries[index].attributes = 0
        }
        try gpt.write(to: file)

        let total = contents.values.reduce(Int64(0)) { sum, path in
            sum + ((try? RawFile.openForReading(path).size()) ?? 0)
        }
        var done: Int64 = 0
        for partition in layout.partitions {
            guard let source = contents[partition.label] else { continue }
            let input = try RawFile.openForReading(source)
            let size = try input.size()
            guard size <= partition.size else {
                throw BuildError(stage: "disk", "\(partition.label) content is \(size) bytes but the partition holds \(partition.size)")
            }
            let before = done
            try file.copySparse(from: input, to: partition.offset) { copied in
                progress.bytes(before + copied, of: total, "writing \(partition.label)")
            }
            done += size
        }
        try writeEmptyDataMarker(file)
        try file.sync()
    }

    /// mm-data has no filesystem until the first boot makes one, and mm-firstboot formats it only
    /// when libblkid finds no signature there. A reused SSD may still hold an old filesystem at that
    /// offset, and the image's hole would not overwrite it (bmaptool and a discard-less flash skip
    /// holes): so the image carries 128 KiB of plain text at the start of mm-data, written with the
    /// image, covering every superblock libblkid looks for there (xfs at 0, ext4 at 1 KiB, md at
    /// 4 KiB, btrfs at 64 KiB).
    func writeEmptyDataMarker(_ file: RawFile) throws {
        guard let data = layout.partition(DiskLayout.Label.data) else { return }
        let line = Array("micromirror: mm-data has no filesystem yet; mm-firstboot makes one on the first boot.\n".utf8)
        var marker: [UInt8] = []
        marker.reserveCapacity(Self.dataMarkerBytes)
        while marker.count < Self.dataMarkerBytes { marker += line }
        try file.write(Array(marker.prefix(Self.dataMarkerBytes)), at: data.offset)
    }

    static let dataMarkerBytes = 128 << 10
}
