import Foundation

/// Writes files so that the final name only ever holds a complete file.
public enum AtomicFile {
    /// Writes `bytes` to `path` via a temporary sibling, fsync and rename.
    public static func write(_ bytes: [UInt8], to path: String, mode: Int32 = 0o644) throws(FileError) {
        let temporary = path + ".tmp-\(getpid())"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode_t(mode))
        guard fd >= 0 else { throw FileError("create", temporary) }
        var ok = true
        bytes.withUnsafeBytes { buffer in
            var done = 0
            while done < buffer.count {
                let n = Foundation.write(fd, buffer.baseAddress! + done, buffer.count - done)
                if n < 0 { if errno == EINTR { continue }; ok = false; return }
                done += n
            }
        }
        let code = errno
        if ok { _ = fchmod(fd, mode_t(mode)) }
        let synced = fsync(fd) == 0
        close(fd)
        guard ok, synced else {
            unlink(temporary)
            throw FileError("write", temporary, code: code)
        }
        guard rename(temporary, path) == 0 else {
            let code = errno
            unlink(temporary)
            throw FileError("rename into place", path, code: code)
        }
    }

    /// Writes UTF-8 `text` to `path` atomically.
    public static func write(_ text: String, to path: String, mode: Int32 = 0o644) throws(FileError) {
        try write(Array(text.utf8), to: path, mode: mode)
    }
}
