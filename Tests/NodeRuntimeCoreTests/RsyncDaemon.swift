import Foundation
import MicromirrorTestSupport

/// A real rsync daemon on 127.0.0.1, serving `modules` (name → directory), for the sync tests.
final class RsyncDaemon: @unchecked Sendable {
    let port: Int
    let directory: String
    private let process: Process

    var upstream: String { "rsync://127.0.0.1:\(port)/" }

    init(modules: [String: String]) throws {
        directory = try ToolRun.scratchDirectory("rsyncd")
        let config = directory + "/rsyncd.conf"
        var text = "use chroot = no\nlog file = \(directory)/rsyncd.log\npid file = \(directory)/rsyncd.pid\n"
        for (name, path) in modules.sorted(by: { $0.key < $1.key }) {
            text += "[\(name)]\n  path = \(path)\n  read only = yes\n  uid = root\n  gid = root\n"
        }
        try text.write(toFile: config, atomically: true, encoding: .utf8)
        // A free port: bind port 0, read it, let it go; the daemon binds it right after.
        var lastError = ""
        for _ in 0..<5 {
            let candidate = try Self.freePort()
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = ["rsync", "--daemon", "--no-detach", "--config=\(config)", "--address=127.0.0.1", "--port=\(candidate)"]
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            if Self.waitForListener(port: candidate, while: process) {
                self.port = candidate
                self.process = process
                return
            }
            process.terminate()
            process.waitUntilExit()
            lastError = (try? String(contentsOfFile: directory + "/rsyncd.log", encoding: .utf8)) ?? ""
        }
        throw TestError("the rsync daemon did not start: \(lastError)")
    }

    func stop() {
        if process.isRunning {
            // SIGKILL: processes started from the test runner may not get SIGTERM.
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        try? FileManager.default.removeItem(atPath: directory)
    }

    deinit { stop() }

    static func freePort() throws -> Int {
        let (fd, port) = try boundSocket(listening: false)
        close(fd)
        return port
    }

    /// A TCP socket bound to 127.0.0.1 on a free port (listening, when asked); the caller closes it.
    static func boundSocket(listening: Bool) throws -> (descriptor: Int32, port: Int) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && (!listening || listen(fd, 16) == 0) && getsockname(fd, $0, &length) == 0 }
        }
        guard bound else {
            close(fd)
            throw TestError("cannot find a free port")
        }
        return (fd, Int(UInt16(bigEndian: address.sin_port)))
    }

    static func waitForListener(port: Int, while process: Process) -> Bool {
        for _ in 0..<100 {
            guard process.isRunning else { return false }
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = in_port_t(UInt16(port).bigEndian)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
            }
            close(fd)
            if connected { return true }
            Thread.sleep(forTimeInterval: 0.05)
        }
        return false
    }
}
