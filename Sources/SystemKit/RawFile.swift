import Foundation
import SystemPackage

/// An open file descriptor with positional I/O, closed in `deinit`. Used for disk images and
/// block devices, where we write at offsets and keep holes.
public final class RawFile {
    public let path: String
    public let descriptor: Int32

    /// Opens `path` read-only.
    public static func openForReading(_ path: String) throws(FileError) -> RawFile {
        try RawFile(path: path, flags: O_RDONLY)
    }

    /// Opens `path` for reading and writing, creating it (mode 0644) if `create` is set.
    public static func openForWriting(_ path: String, create: Bool = false, truncate: Bool = false) throws(FileError) -> RawFile {
        var flags = O_RDWR
        if create { flags |= O_CREAT }
        if truncate { flags |= O_TRUNC }
        return try RawFile(path: path, flags: flags)
    }

    /// Opens `path` for I/O that bypasses the page cache (`O_DIRECT`): buffers, offsets and lengths
    /// must be multiples of the device's logical block size (4096 is always safe). Used to write a
    /// slot without evicting the mirror's hot files and to read back what is on the device itself.
    public static func openDirect(_ path: String, writing: Bool) throws(FileError) -> RawFile {
        try RawFile(path: path, flags: (writing ? O_WRONLY : O_RDONLY) | oDirect)
    }

    private init(path: String, flags: Int32) throws(FileError) {
        let fd = try Syscall.open(path, flags)
        self.path = path
        self.descriptor = fd
    }

    deinit { Syscall.close(descriptor) }

    /// O_DIRECT; glibc only defines it with _GNU_SOURCE, which Swift's import does not set.
    #if arch(x86_64)
    private static let oDirect: Int32 = 0o40000
    #else
    private static let oDirect: Int32 = 0o200000  // arm64
    #endif

    // SEEK_DATA / SEEK_HOLE need _GNU_SOURCE in glibc's headers, so Swift does not see them.
    private let seekData: Int32 = 3
    private let seekHole: Int32 = 4

    /// Size in bytes (for a block device, its capacity).
    public func size() throws(FileError) -> Int64 {
        Int64(try Syscall.check("seek to end of", path) { lseek(descriptor, 0, SEEK_END) })
    }

    /// Sets the file length (sparse extension).
    public func truncate(to length: Int64) throws(FileError) {
        try Syscall.check("truncate", path) { ftruncate(descriptor, off_t(length)) }
    }

    /// Reads up to `buffer.count` bytes at `offset`; returns how many were read (0 at end).
    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int64) throws(FileError) -> Int {
        var done = 0
        while done < buffer.count {
            let n = try Syscall.check("read", path) { pread(descriptor, buffer.baseAddress! + done, buffer.count - done, off_t(offset) + off_t(done)) }
            if n == 0 { break }
            done += n
        }
        return done
    }

    /// Reads exactly `count` bytes at `offset`; throws if the file is shorter.
    public func read(count: Int, at offset: Int64) throws(FileError) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        var result: Result<Int, FileError> = .success(0)
        bytes.withUnsafeMutableBytes { buffer in result = Result { () throws(FileError) in try read(into: buffer, at: offset) } }
        let got = try result.get()
        guard got == count else { throw FileError("short read (\(got) of \(count) bytes at \(offset)) from", path, code: EIO) }
        return bytes
    }

    /// Writes all of `bytes` at `offset`.
    public func write(_ bytes: UnsafeRawBufferPointer, at offset: Int64) throws(FileError) {
        var done = 0
        while done < bytes.count {
            done += try Syscall.check("write", path) { pwrite(descriptor, bytes.baseAddress! + done, bytes.count - done, off_t(offset) + off_t(done)) }
        }
    }

    /// Writes all of `bytes` at `offset`.
    public func write(_ bytes: [UInt8], at offset: Int64) throws(FileError) {
        var result: Result<Void, FileError> = .success(())
        bytes.withUnsafeBytes { buffer in result = Result { () throws(FileError) in try write(buffer, at: offset) } }
        try result.get()
    }

    /// Flushes data and metadata to stable storage.
    public func sync() throws(FileError) {
        try Syscall.sync(descriptor, path: path)
    }

    /// The byte ranges that hold data (everything outside them is a hole), via SEEK_DATA/SEEK_HOLE.
    /// A filesystem without hole support reports one range covering the whole file.
    public func dataRanges() throws(FileError) -> [Range<Int64>] {
        let end = try size()
        var ranges: [Range<Int64>] = []
        var position: Int64 = 0
        while position < end {
            let dataStart: off_t
            switch Syscall.retrying({ lseek(descriptor, off_t(position), seekData) }) {
            case .success(let offset): dataStart = offset
            case .failure(.noSuchAddressOrDevice): return ranges  // only a hole remains
            case .failure(let error): throw FileError("SEEK_DATA in", path, code: error.rawValue)
            }
            let holeStart = (try? Syscall.check("SEEK_HOLE in", path) { lseek(descriptor, dataStart, seekHole) }) ?? off_t(end)
            ranges.append(Int64(dataStart)..<Int64(holeStart))
            position = Int64(holeStart)
        }
        return ranges
    }

    /// Hashes `length` bytes starting at `offset` with SHA-256, calling `progress` with bytes done.
    public func sha256(offset: Int64 = 0, length: Int64, progress: ((Int64) -> Void)? = nil) throws(FileError) -> String {
        try sha256Hasher(offset: offset, length: length, progress: progress).finalizeHex()
    }

    /// A SHA-256 hasher fed `length` bytes from `offset`, to be fed more (a resumed download).
    public func sha256Hasher(offset: Int64 = 0, length: Int64, progress: ((Int64) -> Void)? = nil) throws(FileError) -> SHA256Hasher {
        let hasher = SHA256Hasher()
        let chunk = 4 << 20
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: chunk, alignment: 4096)
        defer { buffer.deallocate() }
        var done: Int64 = 0
        while done < length {
            let want = Int(min(Int64(chunk), length - done))
            let got = try read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<want]), at: offset + done)
            guard got == want else { throw FileError("short read while hashing", path, code: EIO) }
            hasher.update(UnsafeRawBufferPointer(rebasing: buffer[0..<got]))
            done += Int64(got)
            progress?(done)
        }
        return hasher
    }

    /// Copies the data ranges of `source` into this file at `offset`, leaving the source's holes
    /// as holes here (the destination region is assumed to be a hole already).
    public func copySparse(from source: RawFile, to offset: Int64, progress: ((Int64) -> Void)? = nil) throws(FileError) {
        let chunk = 4 << 20
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: chunk, alignment: 4096)
        defer { buffer.deallocate() }
        var copied: Int64 = 0
        for range in try source.dataRanges() {
            var position = range.lowerBound
            while position < range.upperBound {
                let want = Int(min(Int64(chunk), range.upperBound - position))
                let got = try source.read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<want]), at: position)
                guard got > 0 else { break }
                try write(UnsafeRawBufferPointer(rebasing: buffer[0..<got]), at: offset + position)
                position += Int64(got)
                copied += Int64(got)
                progress?(copied)
            }
        }
    }
}
