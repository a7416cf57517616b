import Foundation
import Logging
import MicromirrorKit
import MicromirrorTestSupport
import NodeRuntimeCore
import Testing

/// The node's rsync daemon for downstream mirrors: the real `rsync --daemon` with the configuration
/// `RsyncdConfig` writes, pulled from by the real rsync client on loopback.
@Suite("rsync for downstream mirrors", .serialized)
struct RsyncdTests {
    /// `rsync --daemon` on 127.0.0.1 with `config`'s text; started as root (as the tests run), so
    /// it reads the mirror as `nobody`, as the node's daemon reads it as `mm-rsync`.
    final class NodeDaemon: @unchecked Sendable {
        let port: Int
        let directory: String
        private let process: Process
        var url: String { "rsync://127.0.0.1:\(port)/" }

        init(_ configure: (inout RsyncdConfig) -> Void, projects: [String], root: String) throws {
            directory = try ToolRun.scratchDirectory("node-rsyncd")
            var config = RsyncdConfig(projects: projects, root: root, node: "test.mm.fcix.net")
            config.lockFile = directory + "/rsyncd.lock"
            configure(&config)
            try config.render().write(toFile: directory + "/rsyncd.conf", atomically: true, encoding: .utf8)
            let port = try RsyncDaemon.freePort()
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = [
                "rsync", "--daemon", "--no-detach", "--config=\(directory)/rsyncd.conf", "--address=127.0.0.1", "--port=\(port)",
                "--log-file=\(directory)/rsyncd.log",
            ]
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            guard RsyncDaemon.waitForListener(port: port, while: process) else {
                throw TestError("the node's rsync daemon did not start: \((try? String(contentsOfFile: directory + "/rsyncd.log", encoding: .utf8)) ?? "")")
            }
            self.port = port
            self.process = process
        }

        func stop() {
            // The daemon forks a process per connection, which holds what Foundation waits on for
            // the daemon's end: all of them go first, none outlives the test.
            if let pkill = try? Process.run(URL(fileURLWithPath: "/usr/bin/pkill"), arguments: ["-KILL", "-f", "config=\(directory)/rsyncd.conf"]) {
                pkill.waitUntilExit()
            }
            if process.isRunning {
                kill(process.processIdentifier, SIGKILL)
                process.waitUntilExit()
            }
            try? FileManager.default.removeItem(atPath: directory)
        }

        deinit { stop() }
    }

    static func rsync(_ arguments: [String]) async throws -> (status: Int32, output: String) {
        let result = try await ToolRun.run("rsync", ["--contimeout=10", "--timeout=60"] + arguments)
        return (result.status, result.combined)
    }

    @Test("a read-only module per project: a real rsync client lists and pulls them; content staged 0750 or 0640 upstream stays out, as on HTTP; --checksum, following links and uploads are refused")
    func downstream() async throws {
        try await SyncTests.withUpstream { upstream, daemon, root in
            // Upstream: public content, and pre-release content staged the Fedora way (0750 directory, 0640 file).
            try SyncTests.write("<repomd/>\n", upstream + "/9/BaseOS/repodata/repomd.xml")
            try SyncTests.write("rpm\n", upstream + "/9/BaseOS/Packages/a.rpm")
            try SyncTests.write("next\n", upstream + "/10/BaseOS/Packages/b.rpm")
            try SyncTests.write("key\n", upstream + "/9/private.key")
            #expect(chmod(upstream + "/10", 0o750) == 0 && chmod(upstream + "/9/private.key", 0o640) == 0)
            try FileManager.default.createSymbolicLink(atPath: upstream + "/latest", withDestinationPath: "9")
            // The sync keeps the upstream's read bits: what was staged stays unreadable to others here.
            let report = await SyncTests.sync(SyncRecipe(project: "almalinux", bandwidthLimit: nil), daemon, root)
            #expect(report.succeeded, "\(report)")
            var mode = stat()
            #expect(stat(root + "/almalinux/10", &mode) == 0 && mode.st_mode & 0o777 == 0o750, "the staged directory was opened up by the sync")
            #expect(stat(root + "/almalinux/9/private.key", &mode) == 0 && mode.st_mode & 0o777 == 0o640)
            #expect(stat(root + "/almalinux/9/BaseOS/Packages/a.rpm", &mode) == 0 && mode.st_mode & 0o777 == 0o644)
            try FileManager.default.createDirectory(atPath: root + "/almalinux/.~tmp~", withIntermediateDirectories: true)
            try SyncTests.write("half\n", root + "/almalinux/.~tmp~/c.rpm")
            try FileManager.default.createDirectory(atPath: root + "/gimp", withIntermediateDirectories: true)

            let node = try NodeDaemon({ _ in }, projects: ["almalinux", "gimp"], root: root)
            defer { node.stop() }
            let listed = try await Self.rsync([node.url])
            #expect(listed.status == 0 && listed.output.contains("almalinux") && listed.output.contains("almalinux on test.mm.fcix.net") && listed.output.contains("gimp"), "\(listed.output)")

            let pulled = try ToolRun.scratchDirectory("downstream")
            defer { try? FileManager.default.removeItem(atPath: pulled) }
            let pull = try await Self.rsync(["-aH", "--delete", node.url + "almalinux/", pulled + "/"])
            #expect(pull.status == 0, "\(pull.output)")
            #expect(SyncTests.tree(pulled, includingWorkArea: true) == [
                "9/BaseOS/repodata/repomd.xml": "<repomd/>\n", "9/BaseOS/Packages/a.rpm": "rpm\n", "latest": "-> 9",
            ], "only what others may read, and no work area")

            let checksum = try await Self.rsync(["-a", "--checksum", node.url + "almalinux/", pulled + "-c/"])
            #expect(checksum.status != 0 && checksum.output.contains("refuse --checksum"), "\(checksum.output)")
            let follow = try await Self.rsync(["-a", "--copy-links", node.url + "almalinux/", pulled + "-l/"])
            #expect(follow.status != 0 && follow.output.contains("refuse"), "\(follow.output)")
            let upload = try await Self.rsync([upstream + "/9/BaseOS/Packages/a.rpm", node.url + "almalinux/uploaded.rpm"])
            #expect(upload.status != 0 && upload.output.contains("read only"), "\(upload.output)")
            #expect(!FileManager.default.fileExists(atPath: root + "/almalinux/uploaded.rpm"))
            let unknown = try await Self.rsync([node.url + "ubuntu/"])
            #expect(unknown.status != 0 && unknown.output.contains("Unknown module"), "\(unknown.output)")
            try? FileManager.default.removeItem(atPath: pulled + "-c")
            try? FileManager.default.removeItem(atPath: pulled + "-l")
        }
    }

    @Test("max connections per module: a client beyond the limit is told to come back later")
    func maxConnections() async throws {
        let root = try ToolRun.scratchDirectory("mirror")
        let pulled = try ToolRun.scratchDirectory("downstream")
        defer { for path in [root, pulled] { try? FileManager.default.removeItem(atPath: path) } }
        try SyncTests.write(String(repeating: "x", count: 4 << 20), root + "/almalinux/big.iso")
        let node = try NodeDaemon({ $0.maxConnections = 1 }, projects: ["almalinux"], root: root)
        defer { node.stop() }
        // 64 KiB/s for 4 MiB: the first pull holds its connection for a minute.
        let first = Process()
        first.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        first.arguments = ["rsync", "-a", "--bwlimit=64", node.url + "almalinux/", pulled + "/"]
        first.standardOutput = FileHandle.nullDevice
        first.standardError = FileHandle.nullDevice
        try first.run()
        defer { if first.isRunning { kill(first.processIdentifier, SIGKILL) } }
        #expect(try await eventually(seconds: 60) { FileManager.default.fileExists(atPath: pulled) && ((try? FileManager.default.contentsOfDirectory(atPath: pulled)) ?? []).contains { $0.hasPrefix(".big.iso.") } })
        let second = try await Self.rsync(["-a", node.url + "almalinux/", pulled + "-2/"])
        #expect(second.status != 0 && second.output.contains("max connections (1) reached"), "\(second.output)")
        try? FileManager.default.removeItem(atPath: pulled + "-2")
    }

    @Test("mm-node rsyncd-config writes the modules from the node file, and refuses a node file that does not load")
    func command() async throws {
        let scratch = try ToolRun.scratchDirectory("rsyncd-config")
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let example = (SyncTests.recipes as NSString).deletingLastPathComponent + "/nodes/example.yaml"
        let written = try await ToolRun.run(
            SyncCommandTests.binaries + "/mm-node", ["rsyncd-config", "--config", example, "--root", "/srv/mirror", "--output", scratch + "/rsyncd.conf"]
        )
        #expect(written.status == 0, "\(written.combined)")
        let text = (try? String(contentsOfFile: scratch + "/rsyncd.conf", encoding: .utf8)) ?? ""
        let node = try NodeConfig.load(path: example)
        #expect(text == RsyncdConfig(projects: node.projects, root: "/srv/mirror", node: node.hostname).render())
        #expect(text.contains("[ubuntu-releases]\n    path = /srv/mirror/ubuntu-releases\n") && text.contains("refuse options = checksum"), "\(text)")

        try "hostname: Not A Name\n".write(toFile: scratch + "/bad.yaml", atomically: true, encoding: .utf8)
        let refused = try await ToolRun.run(SyncCommandTests.binaries + "/mm-node", ["rsyncd-config", "--config", scratch + "/bad.yaml", "--output", scratch + "/bad.conf"])
        #expect(refused.status != 0 && refused.combined.contains("bad.yaml"), "\(refused.combined)")
        #expect(!FileManager.default.fileExists(atPath: scratch + "/bad.conf"))
    }
}
