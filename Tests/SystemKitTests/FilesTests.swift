import Foundation
import MicromirrorTestSupport
import SystemKit
import Testing

@Suite("Files: atomic writes, system calls, the mount table", .serialized)
struct FilesTests {
    @Test("a write that does not fit fails with the real errno, leaves the old file whole and no temporary behind")
    func fullFilesystem() async throws {
        let dir = try temporaryDirectory()
        defer {
            ToolRun.cleanUp("umount", [dir])
            try? FileManager.default.removeItem(atPath: dir)
        }
        let mounted = try await ToolRun.run("mount", ["-t", "tmpfs", "-o", "size=256k", "mm-full", dir])
        try #require(mounted.status == 0, "\(mounted.combined)")
        try AtomicFile.write("the old state\n", to: dir + "/state.json")
        #expect(throws: FileError.self) { try AtomicFile.write([UInt8](repeating: 7, count: 1 << 20), to: dir + "/state.json") }
        do {
            try AtomicFile.write([UInt8](repeating: 7, count: 1 << 20), to: dir + "/state.json")
        } catch {
            #expect(error.code == ENOSPC && "\(error)".contains("No space left on device") && "\(error)".contains("state.json.tmp-"), "\(error)")
        }
        #expect(try String(contentsOfFile: dir + "/state.json", encoding: .utf8) == "the old state\n")
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["state.json"])
    }

    @Test("a failing system call reports its own errno, whatever runs after it")
    func errnoOfTheCall() throws {
        #expect(throws: FileError.self) { try Syscall.open("/nonexistent/dir/file", O_RDONLY) }
        do {
            _ = try Syscall.open("/nonexistent/dir/file", O_RDONLY)
        } catch {
            #expect(error.code == ENOENT && error.description == "open /nonexistent/dir/file: No such file or directory")
        }
        do {
            try Syscall.syncDirectory("/proc/self/status")
        } catch {
            #expect(error.code == ENOTDIR, "\(error)")
        }
    }

    @Test("mount points from the kernel's table, escapes undone")
    func mountTable() {
        let table = MountTable(text: "proc /proc proc rw 0 0\n/dev/sda5 /srv ext4 rw,noatime 0 0\ntmpfs /mnt/with\\040space tmpfs rw 0 0\n")
        #expect(table.isMountPoint("/srv") && table.isMountPoint("/srv/"))
        #expect(!table.isMountPoint("/srv/mirror"))
        #expect(table.isMountPoint("/mnt/with space"))
        #expect(MountTable.current().isMountPoint("/proc"))
    }
}
