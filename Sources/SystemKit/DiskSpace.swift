import Foundation

/// Free space on a filesystem, as an unprivileged writer may use it.
public enum DiskSpace {
    /// Bytes available at `path` to a non-root writer (statvfs `f_bavail`): what a download or a
    /// sync can count on, the root-reserved blocks left out.
    public static func available(at path: String) throws -> Int64 {
        var info = statvfs()
        try Syscall.check("statvfs", path) { statvfs(path, &info) }
        return Int64(info.f_bavail) * Int64(info.f_frsize)
    }

    /// The size of the filesystem holding `path` (statvfs `f_blocks`).
    public static func total(at path: String) throws -> Int64 {
        var info = statvfs()
        try Syscall.check("statvfs", path) { statvfs(path, &info) }
        return Int64(info.f_blocks) * Int64(info.f_frsize)
    }
}
