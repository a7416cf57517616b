import Foundation
import FirstbootCore
import Logging
import MicromirrorKit
import SystemKit
import MicromirrorTestSupport
import Testing

@Suite("Applying node files")
struct ApplyTests {
    func scratch() throws -> String {
        let dir = NSTemporaryDirectory() + "mm-apply-\(UUID().uuidString)"
        for sub in ["state", "root"] {
            try FileManager.default.createDirectory(atPath: dir + "/" + sub, withIntermediateDirectories: true)
        }
        return dir
    }

    func firstboot(_ dir: String) -> Firstboot {
        var options = Firstboot.Options()
        options.config = dir + "/node.yaml"
        options.state = dir + "/state"
        options.root = dir + "/root"
        options.steps = [.hostname, .ssh, .console]
        return Firstboot(options: options, runner: CommandRunner(logger: Logger(label: "test")))
    }

    @Test("an invalid node file applies nothing new: the last good one stays, and the console says why")
    func lastGood() async throws {
        let dir = try scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try node().write(toFile: dir + "/node.yaml", atomically: true, encoding: .utf8)
        let good = try await firstboot(dir).run()
        #expect(good.problems.isEmpty && !good.usedLastGood)
        #expect(try String(contentsOfFile: dir + "/root/etc/hostname", encoding: .utf8) == "example-isp.mm.fcix.net\n")
        #expect(FileManager.default.fileExists(atPath: dir + "/state/node.last-good.yaml"))

        // The NOC pushes a file with a new name and a broken address: none of it may be applied.
        try node([("name: example-isp", "name: renamed-isp"), ("192.0.2.10/24", "192.0.2.10/40")])
            .write(toFile: dir + "/node.yaml", atomically: true, encoding: .utf8)
        let bad = try await firstboot(dir).run()
        #expect(bad.usedLastGood)
        #expect(bad.problems.contains { $0.contains("node.yaml:5: network.ipv4.address: prefix /40 is out of range") }, "\(bad.problems)")
        #expect(try String(contentsOfFile: dir + "/root/etc/hostname", encoding: .utf8) == "example-isp.mm.fcix.net\n")
        let issue = try String(contentsOfFile: dir + "/root" + ConsoleReport.path, encoding: .utf8)
        #expect(issue.contains("NODE FILE PROBLEMS") && issue.contains("prefix /40"))
        #expect(issue.contains("example-isp.mm.fcix.net"), "the console names the node by its last good name")
    }

    @Test("with no file at all and nothing to fall back on, nothing is applied and the console says so")
    func noFile() async throws {
        let dir = try scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let report = try await firstboot(dir).run()
        #expect(report.applied == nil)
        #expect(report.problems.contains { $0.contains("node.yaml: file does not exist") })
        #expect(!FileManager.default.fileExists(atPath: dir + "/root/etc/hostname"))
        let issue = try String(contentsOfFile: dir + "/root" + ConsoleReport.path, encoding: .utf8)
        #expect(issue.contains("micromirror unconfigured"))
    }

    @Test("mm-firstboot render writes exactly the files apply would write")
    func render() async throws {
        let dir = try scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let binaries = ProcessInfo.processInfo.environment["MM_BINARIES"] ?? packageRoot + "/.build/release"
        let result = try await Shell.run(binaries + "/mm-firstboot", ["render", "--config", packageRoot + "/nodes/example.yaml", "--out", dir + "/out"])
        #expect(result.status == 0, "\(result.output)")
        let config = try NodeConfig.load(path: packageRoot + "/nodes/example.yaml")
        for file in Firstboot.render(config, mac: "52:54:00:12:34:56") {
            let written = try String(contentsOfFile: dir + "/out" + file.path, encoding: .utf8)
            #expect(written == file.content, "\(file.path) differs")
        }
        #expect(try String(contentsOfFile: dir + "/out/run/systemd/network/10-micromirror-wan.link", encoding: .utf8).contains("MACAddress=52:54:00:12:34:56"))
        let bad = try await Shell.run(binaries + "/mm-firstboot", ["render", "--config", "/nonexistent.yaml", "--out", dir + "/out2"])
        #expect(bad.status == 1 && bad.output.contains("/nonexistent.yaml: file does not exist"))
        #expect(!FileManager.default.fileExists(atPath: dir + "/out2"))
    }

    @Test("a failing step is reported and the independent ones still run")
    func failuresCollected() async throws {
        let dir = try scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try node().write(toFile: dir + "/node.yaml", atomically: true, encoding: .utf8)
        // /root is a file: the NOC's keys cannot be installed.
        try "not a directory".write(toFile: dir + "/root/root", atomically: true, encoding: .utf8)
        let report = try await firstboot(dir).run()
        #expect(report.problems.count == 1 && report.problems[0].hasPrefix("ssh:"), "\(report.problems)")
        #expect(try String(contentsOfFile: dir + "/root/etc/hostname", encoding: .utf8) == "example-isp.mm.fcix.net\n", "the host name step was skipped")
        let issue = try String(contentsOfFile: dir + "/root" + ConsoleReport.path, encoding: .utf8)
        #expect(issue.contains("ssh:"), "the console does not show the failed step")
        #expect(!FileManager.default.fileExists(atPath: dir + "/state/node.last-good.yaml"), "a file that did not apply whole is not the last good one")
    }

    @Test("the last good copy is byte for byte the file that was validated")
    func lastGoodBytes() async throws {
        let dir = try scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let text = node() + "# a comment, kept as written\n"
        try text.write(toFile: dir + "/node.yaml", atomically: true, encoding: .utf8)
        let report = try await firstboot(dir).run()
        #expect(report.problems.isEmpty)
        #expect(try Data(contentsOf: URL(fileURLWithPath: dir + "/state/node.last-good.yaml")) == Data(text.utf8))
    }

    static var binaries: String { ProcessInfo.processInfo.environment["MM_BINARIES"] ?? packageRoot + "/.build/release" }

    @Test("render writes exactly what apply really writes (apply run in its own network namespace)")
    func renderMatchesApply() async throws {
        let dir = try scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let mac = "52:54:00:12:34:56"
        // A sysfs with the uplink already named wan0, so apply renames nothing.
        try FileManager.default.createDirectory(atPath: dir + "/sys/wan0", withIntermediateDirectories: true)
        try (mac + "\n").write(toFile: dir + "/sys/wan0/address", atomically: true, encoding: .utf8)
        let example = packageRoot + "/nodes/example.yaml"
        let applied = try await ToolRun.run(
            "unshare",
            [
                "--net", Self.binaries + "/mm-firstboot", "apply", "--config", example, "--state", dir + "/state", "--root", dir + "/root",
                "--sysfs-net", dir + "/sys", "--steps", "network,hostname,firewall,ssh",
            ]
        )
        #expect(applied.status == 0, "\(applied.combined)")
        let rendered = try await ToolRun.run(Self.binaries + "/mm-firstboot", ["render", "--config", example, "--out", dir + "/out"])
        #expect(rendered.status == 0, "\(rendered.combined)")
        func files(_ base: String) -> [String: String] {
            var result: [String: String] = [:]
            let walker = FileManager.default.enumerator(atPath: base)
            while let relative = walker?.nextObject() as? String {
                var isDirectory: ObjCBool = false
                if FileManager.default.fileExists(atPath: base + "/" + relative, isDirectory: &isDirectory), !isDirectory.boolValue {
                    result["/" + relative] = try? String(contentsOfFile: base + "/" + relative, encoding: .utf8)
                }
            }
            return result
        }
        let fromApply = files(dir + "/root")
        let fromRender = files(dir + "/out")
        #expect(!fromRender.isEmpty)
        #expect(fromApply.keys.sorted() == fromRender.keys.sorted(), "apply wrote \(fromApply.keys.sorted()), render \(fromRender.keys.sorted())")
        for (path, content) in fromRender {
            #expect(fromApply[path] == content, "\(path): render and apply differ")
        }
    }

    @Test("files are written durably: data synced, renamed into place, synced again under the new name (vfat), then the directory synced")
    func durableWrites() async throws {
        let dir = try scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let traced = try await ToolRun.run(
            "strace", ["-f", "-y", "-e", "trace=fsync,rename,renameat,renameat2", Self.binaries + "/mm-firstboot", "render", "--config", packageRoot + "/nodes/example.yaml", "--out", dir + "/out"]
        )
        #expect(traced.status == 0, "\(traced.combined)")
        let calls = traced.stderr.split(separator: "\n").map(String.init).filter { $0.contains("fsync(") || $0.contains("rename") }
        let hostname = try #require(calls.firstIndex { $0.contains("rename") && $0.contains("/out/etc/hostname\"") }, "\(calls)")
        #expect(hostname > 0 && calls[hostname - 1].contains("fsync(") && calls[hostname - 1].contains("hostname.tmp-"), "the data is synced before the rename: \(calls)")
        #expect(hostname + 1 < calls.count && calls[hostname + 1].contains("fsync(") && calls[hostname + 1].contains("/out/etc/hostname>"), "the file is synced under its new name: \(calls)")
        #expect(hostname + 2 < calls.count && calls[hostname + 2].contains("fsync(") && calls[hostname + 2].contains("/out/etc>"), "the directory is synced after the rename: \(calls)")
    }
}
