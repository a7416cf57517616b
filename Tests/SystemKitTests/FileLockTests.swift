import Foundation
import SystemKit
import Testing

@Suite("FileLock: one holder at a time")
struct FileLockTests {
    @Test("a second taker is refused while the lock lives and gets it once it is dropped")
    func exclusive() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var held: FileLock? = try #require(try FileLock.tryAcquire(dir + "/x.lock"))
        #expect(try FileLock.tryAcquire(dir + "/x.lock") == nil)
        #expect(FileLock.holder(dir + "/x.lock") == getpid())
        withExtendedLifetime(held) {}
        held = nil
        #expect(try FileLock.tryAcquire(dir + "/x.lock") != nil)
    }

    /// What a process spawned on another thread does between its fork and its exec: it holds a copy
    /// of every descriptor. Here the child keeps the copy (dup2 onto its fd 3) to make the window long.
    @Test("a lock dropped while a child process still has a copy of its descriptor is free at once")
    func droppedWhileSharedWithAChild() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/update.lock"
        var held: FileLock? = try #require(try FileLock.tryAcquire(path))
        let fd = try #require(Self.descriptor(of: path), "the lock's descriptor is not in /proc/self/fd")
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, fd, 3)
        var child: pid_t = 0
        let argv: [UnsafeMutablePointer<CChar>?] = [strdup("/bin/sleep"), strdup("30"), nil]
        defer { argv.forEach { free($0) } }
        try #require(posix_spawn(&child, "/bin/sleep", &actions, nil, argv, environ) == 0)
        defer {
            kill(child, SIGKILL)
            var status: Int32 = 0
            waitpid(child, &status, 0)
        }
        withExtendedLifetime(held) {}
        held = nil
        #expect(try FileLock.tryAcquire(path) != nil, "the child's copy of the descriptor kept the lock")
    }

    static func descriptor(of path: String) -> Int32? {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
        return entries.compactMap(Int32.init).first { fd in
            (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\(fd)")) == path
        }
    }
}
