import Foundation
import SystemPackage

/// An exclusive advisory lock (flock(2)) on a file, held while the value lives: one updater (or
/// one sync of a project) at a time, across processes. The kernel drops it when the process dies,
/// so a power cut or a crash never leaves a stale lock behind.
public final class FileLock: Sendable {
    public let path: String
    private let descriptor: Int32

    private init(path: String, descriptor: Int32) {
        self.path = path
        self.descriptor = descriptor
    }

    /// Takes the lock on `path` (created if missing) without waiting; nil when another process holds it.
    /// A lock file another user made (root's `mm-node sync` by hand, the service's user after it) is
    /// locked read-only: flock needs no write access, only the holder's pid is not written then.
    public static func tryAcquire(_ path: String) throws(FileError) -> FileLock? {
        let fd: Int32
        var writable = true
        do {
            fd = try Syscall.open(path, O_RDWR | O_CREAT, mode: 0o644)
        } catch where error.code == EACCES {
            fd = try Syscall.open(path, O_RDONLY)
            writable = false
        }
        switch Syscall.retrying({ flock(fd, LOCK_EX | LOCK_NB) }) {
        case .success:
            // Who holds it, for the message another process prints.
            if writable {
                let pid = Array("\(getpid())\n".utf8)
                _ = ftruncate(fd, 0)
                _ = pid.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
            }
            return FileLock(path: path, descriptor: fd)
        case .failure(let error):
            Syscall.close(fd)
            if error == .wouldBlock { return nil }
            throw FileError("flock", path, code: error.rawValue)
        }
    }

    /// The process id written by the holder, when there is one.
    public static func holder(_ path: String) -> Int32? {
        (try? String(contentsOfFile: path, encoding: .utf8)).flatMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
    }

    /// Who holds the lock at `path`, in words for a refusal: `process N holds PATH`.
    public static func holding(_ path: String) -> String {
        (holder(path).map { "process \($0)" } ?? "another process") + " holds " + path
    }

    deinit {
        // Unlock before closing: a child being spawned on another thread has a copy of the
        // descriptor until its exec, and a plain close would leave the lock held through it.
        _ = flock(descriptor, LOCK_UN)
        Syscall.close(descriptor)
    }
}
