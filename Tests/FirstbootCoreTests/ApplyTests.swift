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
}
