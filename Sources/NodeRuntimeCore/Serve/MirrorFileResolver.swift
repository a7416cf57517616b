import CLinuxShims
import Foundation

/// Maps safe request paths to files under the mirror root.
///
/// Files are opened with openat2(RESOLVE_BENEATH) relative to the root's descriptor, so the kernel
/// itself refuses anything that would leave the root (`..`, absolute symlinks, symlinks pointing
/// outside) and there is no window between checking a path and opening it. Relative symlinks inside
/// the root (`current -> 24.04`) work as usual. rsync's partial files do not exist for clients.
public final class MirrorFileResolver: Sendable {
    /// The root, canonical (realpath), without a trailing slash.
    public let root: String
    private let rootDescriptor: Int32

    public init(root: String) throws {
        guard let canonical = realpath(root, nil) else {
            throw ServeError("mirror root \(root) does not exist or cannot be read")
        }
        defer { free(canonical) }
        self.root = String(cString: canonical)
        let fd = open(self.root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw ServeError("cannot open the mirror root \(self.root): \(String(cString: strerror(errno)))") }
        self.rootDescriptor = fd
    }

    deinit { close(rootDescriptor) }

    /// What `fstat` said about an opened file. Two equal values describe the same, unchanged file:
    /// a sync that replaces a file makes a new inode, an edit in place moves mtime and ctime.
    public struct FileInfo: Sendable, Equatable {
        public var size: Int64
        public var modified: Int
        public var modifiedNanoseconds: Int
        public var inode: UInt64
        public var device: UInt64 = 0
        /// ctime, which also moves on changes that keep mtime (`touch -m -d`, a chmod).
        public var changed: Int = 0
        public var changedNanoseconds: Int = 0

        public init(size: Int64, modified: Int, modifiedNanoseconds: Int, inode: UInt64, device: UInt64 = 0, changed: Int = 0, changedNanoseconds: Int = 0) {
            self.size = size
            self.modified = modified
            self.modifiedNanoseconds = modifiedNanoseconds
            self.inode = inode
            self.device = device
            self.changed = changed
            self.changedNanoseconds = changedNanoseconds
        }

        init(_ st: stat) {
            self.init(
                size: Int64(st.st_size), modified: Int(st.st_mtim.tv_sec), modifiedNanoseconds: Int(st.st_mtim.tv_nsec), inode: UInt64(st.st_ino),
                device: UInt64(st.st_dev), changed: Int(st.st_ctim.tv_sec), changedNanoseconds: Int(st.st_ctim.tv_nsec)
            )
        }
    }

    public enum Resolved: Sendable, Equatable {
        /// An open descriptor the caller must close.
        case file(descriptor: Int32, info: FileInfo)
        case directory(path: String)
        case notFound
    }

    public func resolve(_ path: RequestPath) -> Resolved {
        if isHidden(path) { return .notFound }
        return resolve(relative: relativePath(path))
    }

    /// rsync's in-flight files do not exist for clients.
    public func isHidden(_ path: RequestPath) -> Bool { path.components.contains(where: RequestPath.isRsyncPartial) }

    /// The path below the root (`.` for the root itself).
    public func relativePath(_ path: RequestPath) -> String { path.components.isEmpty ? "." : path.components.joined(separator: "/") }

    /// What the file at `relative` is now, without opening it; nil if it is gone.
    ///
    /// Only for checking a file already opened safely: this follows symlinks, even out of the
    /// root, so a caller may trust the answer only when it equals the `FileInfo` it got from
    /// `resolve` (the same inode, unchanged).
    func currentInfo(relative: String) -> FileInfo? {
        var info = stat()
        guard fstatat(rootDescriptor, relative, &info, 0) == 0, info.st_mode & S_IFMT == S_IFREG else { return nil }
        return FileInfo(info)
    }

    /// Resolves a relative path from `relativePath`, checked with `isHidden`.
    func resolve(relative: String) -> Resolved {
        // O_NONBLOCK: opening a FIFO someone left in the tree must not block the event loop.
        let flags = O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK
        var fd = CLinuxShims_openBeneath(rootDescriptor, relative, flags)
        if fd < 0, errno == ENOSYS { fd = openChecked(relative, flags: flags) }  // kernels before 5.6
        guard fd >= 0 else { return .notFound }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            close(fd)
            return .notFound
        }
        switch info.st_mode & S_IFMT {
        case S_IFREG:
            return .file(descriptor: fd, info: FileInfo(info))
        case S_IFDIR:
            close(fd)
            return .directory(path: relative == "." ? root : root + "/" + relative)
        default:
            close(fd)
            return .notFound
        }
    }

    /// realpath, check, open: the fallback where openat2 is missing.
    private func openChecked(_ relative: String, flags: Int32) -> Int32 {
        guard let canonical = realpath(root + "/" + relative, nil) else { return -1 }
        defer { free(canonical) }
        let real = String(cString: canonical)
        guard contains(real) else { return -1 }
        return open(real, flags)
    }

    /// Whether `path` (already canonical) lies inside the root.
    public func contains(_ path: String) -> Bool { path == root || path.hasPrefix(root + "/") }
}

/// The server could not start or serve, and why.
public struct ServeError: Error, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
