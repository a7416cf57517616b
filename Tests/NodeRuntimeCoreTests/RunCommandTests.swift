import Foundation
import MicromirrorKit
import MicromirrorTestSupport
import NodeRuntimeCore
import Testing

/// `mm-node run`, the release program, as systemd starts it: node file, last good file, roles,
/// the data partition check, a project without a recipe.
@Suite("mm-node run", .serialized)
struct RunCommandTests {
    static var mmNode: String { SyncCommandTests.binaries + "/mm-node" }
    static var example: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path + "/nodes/example.yaml"
    }

    /// A scratch node: `config/` (mm-config) and `data/` (mm-data) with the example node file,
    /// its projects changed to `projects`, its upstream to `upstream` and no MQTT.
    static func node(projects: [String], upstream: String = "rsync://127.0.0.1:1/") throws -> (dir: String, paths: NodePaths) {
        let dir = try ToolRun.scratchDirectory("run")
        let paths = NodePaths(config: dir + "/config", data: dir + "/data")
        try FileManager.default.createDirectory(atPath: paths.config, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: paths.mirror, withIntermediateDirectories: true)
        var text = try String(contentsOfFile: example, encoding: .utf8)
        text = text.replacingOccurrences(of: "projects: [ubuntu-releases, almalinux, archlinux]", with: "projects: [\(projects.joined(separator: ", "))]")
        text = text.replacingOccurrences(of: "upstream: rsync://mirror.fcix.net/", with: "upstream: \(upstream)")
        let mqtt = try #require(text.range(of: "mqtt:"))
        let telemetry = try #require(text.range(of: "telemetry:"))
        text.removeSubrange(mqtt.lowerBound..<telemetry.lowerBound)
        try text.write(toFile: paths.nodeFile, atomically: true, encoding: .utf8)
        return (dir, paths)
    }

    /// `mm-node run` in the background on `port`, for the node under `paths`.
    static func start(_ paths: NodePaths, port: Int, services: String, extra: [String] = []) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: mmNode)
        process.arguments = [
            "run", "--config", paths.nodeFile, "--root", paths.mirror, "--listen", "127.0.0.1:\(port)", "--access-log", paths.accessLog,
            "--sync-state", paths.syncState, "--recipes", SyncTests.recipes, "--services", services, "--require-mount", "none",
            "--traffic-history", paths.traffic,
        ] + extra
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        return process
    }

    static func stop(_ process: Process) async throws {
        guard process.isRunning else { return }
        kill(process.processIdentifier, SIGTERM)
        for _ in 0..<300 where process.isRunning { try await Task.sleep(for: .milliseconds(100)) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    }

    static func get(_ url: String) async throws -> String {
        try await ToolRun.run("curl", ["-sS", "--max-time", "10", url]).combined
    }

    @Test("an invalid node file: serves with the last good one; without one, refuses to start and says why")
    func lastGood() async throws {
        let (dir, paths) = try Self.node(projects: ["almalinux"])
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let good = try String(contentsOfFile: paths.nodeFile, encoding: .utf8)
        try good.replacingOccurrences(of: "name: example-isp", with: "name: last-good-isp").write(toFile: paths.lastGoodNodeFile, atomically: true, encoding: .utf8)
        try good.replacingOccurrences(of: "192.0.2.10/24", with: "192.0.2.10/99").write(toFile: paths.nodeFile, atomically: true, encoding: .utf8)
        let port = try RsyncDaemon.freePort()
        let server = try Self.start(paths, port: port, services: "serve")
        var listing = ""
        _ = try await eventually(seconds: 120) {
            listing = (try? await Self.get("http://127.0.0.1:\(port)/")) ?? ""
            return listing.contains("last-good-isp.mm.fcix.net")
        }
        try await Self.stop(server)
        #expect(listing.contains("last-good-isp.mm.fcix.net"), "not serving with the last good node file: \(listing)")

        try FileManager.default.removeItem(atPath: paths.lastGoodNodeFile)
        let refused = try await ToolRun.run(
            Self.mmNode, ["run", "--config", paths.nodeFile, "--root", paths.mirror, "--services", "serve", "--require-mount", "none", "--listen", "127.0.0.1:\(port)"]
        )
        #expect(refused.status == 1, "\(refused.combined)")
        #expect(refused.stderr.contains("no last good one") && refused.stderr.contains("prefix /99 is out of range"), "\(refused.stderr)")
    }

    @Test("the data partition not mounted: refuses to start, naming the path")
    func unmountedData() async throws {
        let (dir, paths) = try Self.node(projects: ["almalinux"])
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let result = try await ToolRun.run(Self.mmNode, ["run", "--config", paths.nodeFile, "--root", paths.mirror, "--require-mount", paths.data])
        #expect(result.status == 1, "\(result.combined)")
        #expect(result.stderr.contains("the data partition is not mounted") && result.stderr.contains(paths.data), "\(result.stderr)")
        #expect(!FileManager.default.fileExists(atPath: paths.mirror + "/almalinux"), "it wrote into the unmounted path")
    }

    @Test("--services: an unknown name or a bad --listen is refused before anything starts")
    func arguments() async throws {
        let unknown = try await ToolRun.run(Self.mmNode, ["run", "--services", "serve,telepathy"])
        #expect(unknown.status == 64 && unknown.stderr.contains("unknown service 'telepathy'"), "\(unknown.combined)")
        let listen = try await ToolRun.run(Self.mmNode, ["run", "--listen", "localhost"])
        #expect(listen.status == 64 && listen.stderr.contains("--listen localhost: expected HOST:PORT"), "\(listen.combined)")
        let serve = try await ToolRun.run(Self.mmNode, ["serve", "--root", "/tmp", "--dscp", "af41"])
        #expect(serve.status != 0 && serve.stderr.contains("--dscp"), "\(serve.combined)")
    }

    @Test("a project without a recipe fails alone: the others sync, and its state says why")
    func missingRecipe() async throws {
        let upstream = try ToolRun.scratchDirectory("upstream")
        let daemon = try RsyncDaemon(modules: ["almalinux": upstream])
        defer {
            daemon.stop()
            try? FileManager.default.removeItem(atPath: upstream)
        }
        try SyncTests.write("<repomd/>\n", upstream + "/9/repodata/repomd.xml")
        let (dir, paths) = try Self.node(projects: ["almalinux", "nosuch"], upstream: daemon.upstream)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let port = try RsyncDaemon.freePort()
        let node = try Self.start(paths, port: port, services: "serve,sync")
        let synced = try await eventually(seconds: 120) {
            FileManager.default.fileExists(atPath: paths.mirror + "/almalinux/9/repodata/repomd.xml")
                && FileManager.default.fileExists(atPath: paths.syncState + "/nosuch.json")
        }
        let state = (try? String(contentsOfFile: paths.syncState + "/nosuch.json", encoding: .utf8)) ?? ""
        let status = try await Self.get("http://127.0.0.1:\(port)/status?format=json")
        let statusJSON = try await Self.get("http://127.0.0.1:\(port)/status.json")
        let running = node.isRunning
        try await Self.stop(node)
        #expect(synced, "almalinux was not synced next to a project without a recipe")
        #expect(running, "mm-node run stopped")
        #expect(state.contains("no usable sync recipe") && state.contains("nosuch.yaml"), "\(state)")
        #expect(status.contains("\"almalinux\"") && status.contains("no usable sync recipe"), "\(status)")
        #expect(statusJSON.contains("\"almalinux\"") && statusJSON.contains("no usable sync recipe"), "/status.json is the same: \(statusJSON)")
    }
}
