import Foundation
import NIOConcurrencyHelpers
import NIOCore

/// The access log's file: appends whole batches of lines, rotates itself by size
/// (`access.log` → `access.log.1` → … → `access.log.KEEP`, the oldest dropped) and reopens its
/// path on request (SIGHUP, after logrotate moved it). Every call blocks on the file: call it off
/// the event loops.
final class AccessLogFile: Sendable {
    let path: String
    /// Rotate once the file has grown past this many bytes.
    let rotateBytes: Int64
    /// Rotated files kept.
    let keep: Int

    private struct Open {
        var descriptor: Int32
        var size: Int64
    }

    /// The descriptor and the size written so far; held while writing, so writes never interleave
    /// with a rotation.
    private let file: NIOLockedValueBox<Open>

    init(path: String, rotateBytes: Int64, keep: Int) throws {
        self.path = path
        self.rotateBytes = max(1, rotateBytes)
        self.keep = max(0, keep)
        file = NIOLockedValueBox(try Self.open(path))
    }

    deinit { file.withLockedValue { close($0.descriptor) } }

    private static func open(_ path: String) throws -> Open {
        let fd = Glibc.open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o640)
        guard fd >= 0 else { throw AccessLogError(path: path, code: errno) }
        var info = stat()
        return Open(descriptor: fd, size: fstat(fd, &info) == 0 ? Int64(info.st_size) : 0)
    }

    /// Appends the batches `take` hands over, in order, each in one write (O_APPEND: whole lines,
    /// never interleaved), rotating when the file has passed its size. `take` runs under the
    /// file's lock: once one caller's append returns, whatever any other caller took is written.
    func append(_ take: () -> [ByteBuffer]) {
        file.withLockedValue { open in
            for batch in take() where batch.readableBytes > 0 {
                let written = batch.withUnsafeReadableBytes { Glibc.write(open.descriptor, $0.baseAddress, $0.count) }
                if written > 0 { open.size += Int64(written) }
                if open.size >= rotateBytes { rotate(&open) }
            }
        }
    }

    /// Opens the path afresh (it was moved away or deleted); the old file is kept if that fails.
    func reopen() {
        file.withLockedValue { open in
            guard let fresh = try? Self.open(path) else { return }
            close(open.descriptor)
            open = fresh
        }
    }

    /// Shifts the rotated files up by one, moves the current one to `.1` and starts a new one.
    private func rotate(_ open: inout Open) {
        if keep == 0 {
            unlink(path)
        } else {
            unlink(path + ".\(keep)")
            for index in stride(from: keep - 1, through: 1, by: -1) {
                rename(path + ".\(index)", path + ".\(index + 1)")
            }
            rename(path, path + ".1")
        }
        guard let fresh = try? Self.open(path) else { return }  // keep writing where we were
        close(open.descriptor)
        open = fresh
    }
}
