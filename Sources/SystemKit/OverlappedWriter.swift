import Foundation

/// Writes large blocks to a file on a thread of its own, two buffers deep: the caller fills (and
/// hashes) the next block while the previous one is on its way to the disk. With `O_DIRECT` a
/// write returns only when the device has the bytes, so done in line it leaves the CPU idle.
///
/// Use: `buffer()` for a block to fill, `write(length:at:)` to queue it, `finish()` to wait for
/// every write and learn the first error. Buffers are aligned for direct I/O.
public final class OverlappedWriter: @unchecked Sendable {
    public let blockSize: Int
    private let file: RawFile
    private let buffers: [UnsafeMutableRawBufferPointer]
    /// Counts the buffers not being written; the serial queue writes them in the order given.
    private let free: DispatchSemaphore
    private let queue = DispatchQueue(label: "micromirror.overlapped-writer")
    private let lock = NSLock()
    private var failure: FileError?
    private var handedOut = 0

    public init(file: RawFile, blockSize: Int, depth: Int = 2, alignment: Int = 4096) {
        self.file = file
        self.blockSize = blockSize
        buffers = (0..<depth).map { _ in UnsafeMutableRawBufferPointer.allocate(byteCount: blockSize, alignment: alignment) }
        free = DispatchSemaphore(value: depth)
    }

    /// The next buffer to fill, once its previous write is done. Throws a write that failed meanwhile.
    public func buffer() throws(FileError) -> UnsafeMutableRawBufferPointer {
        free.wait()
        if let failure = lock.withLock({ failure }) {
            free.signal()
            throw failure
        }
        defer { handedOut += 1 }
        return buffers[handedOut % buffers.count]
    }

    /// Queues the first `length` bytes of the buffer `buffer()` returned last, to be written at `offset`.
    public func write(length: Int, at offset: Int64) {
        // The buffer belongs to the queue until its write signals `free`: no one else touches it.
        nonisolated(unsafe) let block = UnsafeRawBufferPointer(rebasing: buffers[(handedOut - 1) % buffers.count][0..<length])
        queue.async { [self] in
            do throws(FileError) {
                if lock.withLock({ failure }) == nil { try file.write(block, at: offset) }
            } catch {
                lock.withLock { if failure == nil { failure = error } }
            }
            free.signal()
        }
    }

    /// Waits for every queued write; throws the first one that failed.
    public func finish() throws(FileError) {
        queue.sync {}
        if let failure = lock.withLock({ failure }) { throw failure }
    }

    deinit {
        queue.sync {}
        buffers.forEach { $0.deallocate() }
    }
}
