import Foundation
import MicromirrorKit
import SystemKit
import MicromirrorTestSupport
import Testing

@Suite("GPT, GUIDs and layout arithmetic")
struct GPTTests {
    @Test("CRC-32 of the standard check string")
    func crc() {
        #expect(CRC32.checksum(Array("123456789".utf8)) == 0xCBF4_3926)
    }

    @Test("GUID text and GPT's mixed-endian bytes round-trip")
    func guidRoundTrip() throws {
        let esp = PartitionType.esp
        #expect(esp.description == "c12a7328-f81f-11d2-ba4b-00a0c93ec93b")
        #expect(esp.mixedEndian.prefix(4) == [0x28, 0x73, 0x2a, 0xc1])
        #expect(GUID(mixedEndian: esp.mixedEndian) == esp)
        #expect(GUID("not-a-guid") == nil)
    }

    @Test("derived GUIDs are stable, distinct per purpose and seed, and version 4 shaped")
    func derivedGUIDs() {
        let a = GUID.derived(seed: "micromirror/qemu/0.1.0/1", purpose: "disk")
        #expect(a == GUID.derived(seed: "micromirror/qemu/0.1.0/1", purpose: "disk"))
        #expect(a != GUID.derived(seed: "micromirror/qemu/0.1.0/1", purpose: "partition:mm-esp"))
        #expect(a != GUID.derived(seed: "micromirror/qemu/0.1.0/2", purpose: "disk"))
        #expect(a.bytes[6] >> 4 == 4)
        #expect(a.bytes[8] & 0xc0 == 0x80)
    }

    static let sizes = DiskLayout.Sizes(esp: 256 << 20, root: 1 << 30, config: 64 << 20, data: 64 << 20)

    @Test("the layout aligns every partition to 1 MiB and leaves room for both GPT copies")
    func layout() throws {
        let layout = try DiskLayout(sizes: Self.sizes)
        #expect(layout.partitions.map(\.label) == ["mm-esp", "mm-root-a", "mm-root-b", "mm-config", "mm-data"])
        #expect(layout.partitions[0].offset == 1 << 20)
        for (previous, next) in zip(layout.partitions, layout.partitions.dropFirst()) {
            #expect(previous.end == next.offset)
        }
        for partition in layout.partitions { #expect(partition.offset % (1 << 20) == 0 && partition.size % (1 << 20) == 0) }
        #expect(layout.diskSize == layout.partitions.last!.end + (1 << 20))
        #expect(layout.diskSize == (1 + 256 + 1024 + 1024 + 64 + 64 + 1) << 20)
    }

    @Test("an unaligned size is rounded up; a larger disk gives the rest to mm-data")
    func layoutGrowth() throws {
        let odd = DiskLayout.Sizes(esp: (256 << 20) + 1, root: 1 << 30, config: 64 << 20, data: 64 << 20)
        #expect(try DiskLayout(sizes: odd).partitions[0].size == 257 << 20)
        let big = try DiskLayout(sizes: Self.sizes, diskSize: 8 << 30)
        let data = big.partitions.last!
        #expect(data.label == "mm-data")
        #expect(data.end == (8 << 30) - (1 << 20))
    }

    @Test("a disk too small is refused with both sizes named")
    func tooSmall() {
        #expect {
            try DiskLayout(sizes: Self.sizes, diskSize: 1 << 30)
        } throws: { error in
            "\(error)".contains("the disk is 1.0 GiB but the layout needs at least 2.4 GiB")
        }
    }

    /// Writes a real GPT with libparted on a sparse file, then edits it like the builder does.
    func makeDisk(size: Int64 = 64 << 20) throws -> (String, [PartitionRequest]) {
        let path = NSTemporaryDirectory() + "gpt-\(UUID().uuidString).img"
        let file = try RawFile.openForWriting(path, create: true, truncate: true)
        try file.truncate(to: size)
        let requests = [
            PartitionRequest(name: "mm-esp", startSector: 2048, sectorCount: 16384, isESP: true),
            PartitionRequest(name: "mm-root-a", startSector: 18432, sectorCount: 32768),
            PartitionRequest(name: "mm-data", startSector: 51200, sectorCount: 8192),
        ]
        try PartitionTable.createGPT(on: path, partitions: requests)
        return (path, requests)
    }

    @Test("libparted writes exactly the requested partitions; our reader sees the same table")
    func libpartedAndReader() throws {
        let (path, requests) = try makeDisk()
        defer { try? FileManager.default.removeItem(atPath: path) }
        let records = try PartitionTable.read(path: path)
        #expect(records.map(\.name) == requests.map(\.name))
        #expect(records.map(\.startSector) == requests.map(\.startSector))
        #expect(records.map(\.sectorCount) == requests.map(\.sectorCount))
        #expect(records[0].isESP && !records[1].isESP)
        let gpt = try GPT.read(from: RawFile.openForReading(path))
        #expect(gpt.partitions.map(\.name) == requests.map(\.name))
        #expect(gpt.partitions[0].typeGUID == PartitionType.esp)
        #expect(gpt.partitions.map(\.firstLBA) == requests.map(\.startSector))
    }

    @Test("setting DPS types and seeded GUIDs keeps the GPT valid for sgdisk")
    func rewriteIsValid() async throws {
        let (path, _) = try makeDisk()
        defer { try? FileManager.default.removeItem(atPath: path) }
        let file = try RawFile.openForWriting(path)
        var gpt = try GPT.read(from: file)
        gpt.diskGUID = GUID.derived(seed: "t", purpose: "disk")
        gpt.entries[1].typeGUID = PartitionType.rootX86_64
        gpt.entries[1].uniqueGUID = GUID.derived(seed: "t", purpose: "root")
        gpt.entries[2].typeGUID = PartitionType.srv
        try gpt.write(to: file)
        let reread = try GPT.read(from: file)
        #expect(reread.diskGUID == gpt.diskGUID)
        #expect(reread.entries[1].typeGUID == PartitionType.rootX86_64)
        #expect(reread.entries[2].typeGUID == PartitionType.srv)
        let sgdisk = try await Run.tool("sgdisk", ["-v", path])
        #expect(sgdisk.contains("No problems found"), "\(sgdisk)")
        let info = try await Run.tool("sgdisk", ["-i", "2", path])
        #expect(info.contains("4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"))
        #expect(info.uppercased().contains(GUID.derived(seed: "t", purpose: "root").description.uppercased()))
    }

    @Test("a corrupted header is refused")
    func corruptHeader() throws {
        let (path, _) = try makeDisk()
        defer { try? FileManager.default.removeItem(atPath: path) }
        let file = try RawFile.openForWriting(path)
        try file.write([0xff], at: 512 + 60)
        #expect(throws: GPTError.self) { try GPT.read(from: file) }
    }

    @Test("relocating the backup header to the end of a grown device passes sgdisk")
    func relocateBackup() async throws {
        let (path, _) = try makeDisk(size: 32 << 20)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let file = try RawFile.openForWriting(path)
        try file.truncate(to: 64 << 20)
        var gpt = try GPT.read(from: file)
        gpt.relocateBackup(deviceBytes: 64 << 20)
        try gpt.write(to: file)
        #expect(gpt.backupLBA == (64 << 20) / 512 - 1)
        let sgdisk = try await Run.tool("sgdisk", ["-v", path])
        #expect(sgdisk.contains("No problems found"), "\(sgdisk)")
    }
}

/// Runs a tool and returns its combined output.
enum Run {
    static func tool(_ name: String, _ arguments: [String]) async throws -> String { try await ToolRun.run(name, arguments).combined }
}
