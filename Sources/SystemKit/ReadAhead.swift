import Foundation

/// Reads `length` bytes of a file from `start` (aligned for `O_DIRECT`) in large blocks on a
/// thread of its own, one block ahead of the caller, so hashing block k overlaps reading block
/// k+1 (with `O_DIRECT` each read waits for the device). Blocks are read in multiples of
/// `alignment`; the caller sees only the bytes within `length`.
public struct ReadAhead {
    public var file: RawFile
    public var length: Int64
    public var blockSize: Int
    public var alignment = 4096
    public var start: Int64

    public init(file: RawFile, start: Int64 = 0, length: Int64, blockSize: Int) {
        self.file = file
        self.start = start
        self.length = length
        self.blockSize = blockSize
    }

    /// Calls `body` with each block in order, and the file offset it starts at. Throws what a read
    /// threw, or a short read when the file ends before `length`.
    public func forEach(_ body: (UnsafeRawBufferPointer, Int64) throws -> Void) throws {
        let queue = DispatchQueue(label: "micromirror.read-ahead")
        let ready = [DispatchSemaphore(value: 0), DispatchSemaphore(value: 0)]
        let results = ReadResults()
        // The reading thread uses the file and one buffer at a time; the semaphores hand each buffer
        // back and forth, so the two sides never touch the same one.
        nonisolated(unsafe) let file = file
        let (origin, length, blockSize, alignment) = (self.start, length, blockSize, alignment)
        let buffers = (0..<2).map { _ in UnsafeMutableRawBufferPointer.allocate(byteCount: blockSize, alignment: alignment) }
        defer {
            queue.sync {}
            buffers.forEach { $0.deallocate() }
        }
        let blocks = Int((length + Int64(blockSize) - 1) / Int64(blockSize))
        func start(_ k: Int) {
            guard k < blocks else { return }
            let offset = Int64(k) * Int64(blockSize)
            let want = Int(min(Int64(blockSize), (length - offset + Int64(alignment) - 1) / Int64(alignment) * Int64(alignment)))
            nonisolated(unsafe) let target = UnsafeMutableRawBufferPointer(rebasing: buffers[k % 2][0..<want])
            queue.async {
                results.set(k % 2, Result { () throws(FileError) in try file.read(into: target, at: origin + offset) })
                ready[k % 2].signal()
            }
        }
        start(0)
        for k in 0..<blocks {
            ready[k % 2].wait()
            let got = try results.get(k % 2).get()
            // Block k+1 goes into the other buffer, which the previous call to `body` is done with.
            start(k + 1)
            let offset = Int64(k) * Int64(blockSize)
            let useful = Int(min(Int64(got), length - offset))
            guard useful == min(Int64(blockSize), length - offset) else {
                throw FileError("short read (\(offset + Int64(max(useful, 0))) of \(length) bytes from offset \(origin)) from", file.path, code: EIO)
            }
            try body(UnsafeRawBufferPointer(rebasing: buffers[k % 2][0..<useful]), origin + offset)
        }
    }

    private final class ReadResults: @unchecked Sendable {
        private let lock = NSLock()
        private var slots: [Result<Int, FileError>] = [.success(0), .success(0)]
        func set(_ i: Int, _ r: Result<Int, FileError>) { lock.withLock { slots[i] = r } }
        func get(_ i: Int) -> Result<Int, FileError> { lock.withLock { slots[i] } }
    }
}
