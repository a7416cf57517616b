import Foundation

/// Writes files so that the final name only ever holds a complete file, and keeps holding it after
/// a power cut: data synced, renamed into place, the file synced again under its new name, then the
/// directory synced so the rename is durable.
///
/// The second sync is for vfat (the ESP): a rename there makes a new directory entry that gets the
/// file's size only when the inode is next written, and a directory sync does not write it. Without
/// it a power cut after the rename leaves the final name holding a 0-byte file (seen in QEMU).
public enum AtomicFile {
    /// Writes `bytes` to `path` via a temporary sibling, fsync, rename and fsync of the directory.
    public static func write(_ bytes: [UInt8], to path: String, mode: Int32 = 0o644) throws(FileError) {
        let temporary = path + ".tmp-\(getpid())"
        let fd = try Syscall.open(temporary, O_WRONLY | O_CREAT | O_TRUNC, mode: mode_t(mode))
        do throws(FileError) {
            var result: Result<Void, FileError> = .success(())
            bytes.withUnsafeBytes { buffer in result = Result { () throws(FileError) in try Syscall.writeAll(fd, buffer, path: temporary) } }
            try result.get()
            // The umask may have narrowed the mode given to open. Not checked: a vfat ESP cannot
            // represent modes at all and refuses any change (EPERM), which must not stop a write there.
            _ = fchmod(fd, mode_t(mode))
            try Syscall.sync(fd, path: temporary)
        } catch {
            Syscall.close(fd)
            unlink(temporary)
            throw error
        }
        Syscall.close(fd)
        do throws(FileError) {
            try rename(temporary, to: path, operation: "rename into place")
        } catch {
            unlink(temporary)  // gone already when only a sync after the rename failed
            throw error
        }
    }

    /// Renames `source` to `target` durably: the file synced again under its new name (for vfat),
    /// then the directory.
    public static func rename(_ source: String, to target: String, operation: String = "rename") throws(FileError) {
        try Syscall.check(operation, target) { Foundation.rename(source, target) }
        let renamed = try Syscall.open(target, O_RDONLY)
        defer { Syscall.close(renamed) }
        try Syscall.sync(renamed, path: target)
        try Syscall.syncDirectory(directory(of: target))
    }

    /// Writes UTF-8 `text` to `path` atomically.
    public static func write(_ text: String, to path: String, mode: Int32 = 0o644) throws(FileError) {
        try write(Array(text.utf8), to: path, mode: mode)
    }

    static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }
}
