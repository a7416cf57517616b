import Foundation
import SystemPackage

/// The one place SystemKit's system calls go through: a call interrupted by a signal (`EINTR`) is
/// made again, and `errno` is read right after the failing call, before anything else (a `close`,
/// a log line, a Swift allocation) can overwrite it.
public enum Syscall {
    /// Calls `body` until it does not fail with EINTR; a negative result is the failure, with its errno.
    @inlinable
    public static func retrying<T: BinaryInteger>(_ body: () -> T) -> Result<T, Errno> {
        while true {
            let result = body()
            if result >= 0 { return .success(result) }
            let code = errno
            if code == EINTR { continue }
            return .failure(Errno(rawValue: code))
        }
    }

    /// `retrying`, throwing a `FileError` that names the operation and the file.
    @inlinable
    @discardableResult
    public static func check<T: BinaryInteger>(_ operation: String, _ path: String, _ body: () -> T) throws(FileError) -> T {
        switch retrying(body) {
        case .success(let value): return value
        case .failure(let error): throw FileError(operation, path, code: error.rawValue)
        }
    }

    /// Opens `path` with `O_CLOEXEC` added; returns the descriptor.
    public static func open(_ path: String, _ flags: Int32, mode: mode_t = 0o644) throws(FileError) -> Int32 {
        try check("open", path) { Foundation.open(path, flags | O_CLOEXEC, mode) }
    }

    /// Writes all of `bytes` to `descriptor` (short writes continued).
    public static func writeAll(_ descriptor: Int32, _ bytes: UnsafeRawBufferPointer, path: String) throws(FileError) {
        var done = 0
        while done < bytes.count {
            done += try check("write", path) { Foundation.write(descriptor, bytes.baseAddress! + done, bytes.count - done) }
        }
    }

    /// fsync(2) of `descriptor`.
    public static func sync(_ descriptor: Int32, path: String) throws(FileError) {
        try check("fsync", path) { fsync(descriptor) }
    }

    /// fsync(2) of the directory `path`, which makes a rename or a new entry in it durable.
    public static func syncDirectory(_ path: String) throws(FileError) {
        let fd = try open(path, O_RDONLY | O_DIRECTORY)
        defer { close(fd) }
        try sync(fd, path: path)
    }

    /// close(2), once: a close interrupted by a signal has still released the descriptor on Linux,
    /// so it is never retried.
    public static func close(_ descriptor: Int32) {
        _ = Foundation.close(descriptor)
    }
}
