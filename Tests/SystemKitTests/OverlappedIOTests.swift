import Foundation
import SystemKit
import Testing

@Suite("Overlapped I/O: writing and reading on a thread of their own")
struct OverlappedIOTests {
    /// Bytes that differ in every block and every position, so a block out of place shows.
    static func pattern(_ count: Int) -> [UInt8] { (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 / 4096) } }

    @Test("blocks queued on the writer land at their offsets, in full, whatever the depth")
    func writes() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let bytes = Self.pattern(10 << 20 + 4096 * 3)
        for depth in [1, 2, 3] {
            let path = dir + "/out-\(depth)"
            let file = try RawFile.openForWriting(path, create: true, truncate: true)
            let writer = OverlappedWriter(file: file, blockSize: 1 << 20, depth: depth)
            var offset = 0
            while offset < bytes.count {
                let buffer = try writer.buffer()
                let take = min(buffer.count, bytes.count - offset)
                bytes[offset..<(offset + take)].withUnsafeBytes { buffer.copyMemory(from: $0) }
                writer.write(length: take, at: Int64(offset))
                offset += take
            }
            try writer.finish()
            #expect(try Array(Data(contentsOf: URL(fileURLWithPath: path))) == bytes, "depth \(depth)")
        }
    }

    @Test("a write that fails is reported by finish (and by the next buffer), naming the file")
    func writeFails() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: dir + "/ro"))
        let file = try RawFile.openForReading(dir + "/ro")  // writes fail with EBADF
        let writer = OverlappedWriter(file: file, blockSize: 4096)
        _ = try writer.buffer()
        writer.write(length: 4096, at: 0)
        do {
            try writer.finish()
            Issue.record("a write to a read-only descriptor succeeded")
        } catch {
            #expect(error.code == EBADF && error.path == dir + "/ro", "\(error)")
        }
        #expect(throws: FileError.self) { _ = try writer.buffer() }
    }

    @Test("read ahead hands every byte once, in order, with its offset; a length not a multiple of the block or the alignment")
    func reads() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let bytes = Self.pattern(5 << 20 + 123)
        try Data(bytes).write(to: URL(fileURLWithPath: dir + "/in"))
        for length in [Int64(bytes.count), 3 << 20, 4096, 1] {
            var seen: [UInt8] = []
            var offsets: [Int64] = []
            try ReadAhead(file: try RawFile.openForReading(dir + "/in"), length: length, blockSize: 1 << 20).forEach { block, offset in
                offsets.append(offset)
                seen += block
            }
            #expect(seen == Array(bytes[0..<Int(length)]), "length \(length)")
            #expect(offsets == (0..<Int((length + (1 << 20) - 1) / (1 << 20))).map { Int64($0) << 20 })
        }
    }

    @Test("a file shorter than the length asked for is a short read naming the file, not a silent end")
    func shortFile() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Data(Self.pattern(3 << 20)).write(to: URL(fileURLWithPath: dir + "/in"))
        var blocks = 0
        do {
            try ReadAhead(file: try RawFile.openForReading(dir + "/in"), length: 4 << 20, blockSize: 1 << 20).forEach { _, _ in blocks += 1 }
            Issue.record("reading 4 MiB from a 3 MiB file succeeded")
        } catch let error as FileError {
            #expect(error.code == EIO && "\(error)".contains("short read") && error.path == dir + "/in", "\(error)")
        }
        #expect(blocks == 3)
    }
}
