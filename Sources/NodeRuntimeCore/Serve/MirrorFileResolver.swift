import Foundation
import SystemKit

/// Maps safe request paths to files under the mirror root.
///
/// Files are opened with openat2(RESOLVE_BENEATH) relative to the root's descriptor, so the kernel
/// itself refuses anything that would leave the root (`..`, absolute symlinks, symlinks pointing
/// outside) and there is no window between checking a path and opening it. Relative symlinks inside
/// the root (`current -> 24.04`) work as usual. rsync's partial files do not exist for clients.
///
/// Only what "others" may read is public (the pre-bitflip rule: content staged upstream with mode
/// 0750 stays dark until it is opened up), even when the server runs as root and the kernel would
/// let it read anything: a file needs `o+r`, the directory listed and every directory on the way
/// needs `o+rx`. Anything else is not found.
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
        /// A public directory, by its path below the root (`relativePath`).
        case directory(relative: String)
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
        let fd = openBeneath(relative, flags: O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK)
        guard fd >= 0 else { return .notFound }
        var info = stat()
        guard fstat(fd, &info) == 0, Self.isPublic(info), ancestorsArePublic(relative) else {
            close(fd)
            return .notFound
        }
        switch info.st_mode & S_IFMT {
        case S_IFREG:
            return .file(descriptor: fd, info: FileInfo(info))
        case S_IFDIR:
            close(fd)
            return .directory(relative: relative)
        default:
            close(fd)
            return .notFound
        }
    }

    /// Opens `relative` beneath the root (openat2, or realpath and a check where it is missing).
    func openBeneath(_ relative: String, flags: Int32) -> Int32 {
        let fd = BeneathOpen.open(rootDescriptor, relative, flags: flags)
        if fd < 0, errno == ENOSYS { return openChecked(relative, flags: flags) }  // kernels before 5.6
        return fd
    }

    /// Whether "others" may read a file (`o+r`) or list and enter a directory (`o+rx`).
    static func isPublic(_ info: stat) -> Bool {
        info.st_mode & S_IFMT == S_IFDIR ? info.st_mode & 0o005 == 0o005 : info.st_mode & 0o004 != 0
    }

    /// Whether every directory above `relative` (below the root) is public. Follows symlinks, like
    /// the walk a client's path takes; the target itself was opened beneath the root already.
    func ancestorsArePublic(_ relative: String) -> Bool {
        var relative = relative
        return relative.withUTF8 { bytes in
            guard let lastSlash = bytes.lastIndex(of: UInt8(ascii: "/")) else { return true }
            // One copy on the stack, cut at each slash in turn: no allocation per request.
            return withUnsafeTemporaryAllocation(of: CChar.self, capacity: lastSlash + 1) { path in
                for index in 0..<lastSlash { path[index] = CChar(bitPattern: bytes[index]) }
                path[lastSlash] = 0
                var info = stat()
                for index in 0...lastSlash where index == lastSlash || bytes[index] == UInt8(ascii: "/") {
                    path[index] = 0
                    let ok = fstatat(rootDescriptor, path.baseAddress!, &info, 0) == 0 && info.st_mode & S_IFMT == S_IFDIR && info.st_mode & 0o005 == 0o005
                    if index < lastSlash { path[index] = CChar(bitPattern: UInt8(ascii: "/")) }
                    if !ok { return false }
                }
                return true
            }
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
