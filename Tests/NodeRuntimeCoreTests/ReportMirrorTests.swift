import Foundation
import MicromirrorTestSupport
import MicromirrorKit
import NodeRuntimeCore
import Testing

/// Fedora's MirrorManager check-in against a local stand-in: Python's own XML-RPC server, which
/// undoes what the real server undoes (URL-safe base64, bzip2, JSON) and keeps what it received.
@Suite("MirrorManager check-in (report_mirror)", .serialized)
struct ReportMirrorTests {
    static let standIn = #"""
        import base64, bz2, json, sys
        from xmlrpc.server import SimpleXMLRPCServer
        port, out = int(sys.argv[1]), sys.argv[2]
        def checkin(data):
            config = json.loads(bz2.decompress(base64.urlsafe_b64decode(data)))
            if config["site"]["password"] != "s3cret":
                raise Exception("bad site password")
            with open(out, "w") as f:
                json.dump(config, f)
            return "checked in successful"
        server = SimpleXMLRPCServer(("127.0.0.1", port), logRequests=False)
        server.register_function(checkin)
        server.serve_forever()
        """#

    static func conf(server: String, tree: String, password: String = "s3cret") -> String {
        """
        # report_mirror.conf as MirrorManager's admin pages give it
        [global]
        enabled=1
        server=\(server)

        [site]
        enabled=1
        name=FCIX
        password=\(password)

        [host]
        enabled=1
        name=example-isp.mm.fcix.net

        [stats]
        enabled=0

        [Fedora EPEL]
        enabled=1
        path=\(tree)

        [Fedora Linux]
        enabled=0
        path=/nonexistent
        """
    }

    @Test("mm-node report-mirror checks in after a good run with what the Python client sends; not after a failed run, nor without a report_mirror.conf; a refusal fails the hook in the server's words")
    func checkin() async throws {
        let scratch = try ToolRun.scratchDirectory("report-mirror")
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let tree = scratch + "/epel"
        for directory in ["9/Everything/x86_64/Packages/a", "9/Everything/x86_64/repodata", ".~tmp~/half"] {
            try FileManager.default.createDirectory(atPath: tree + "/" + directory, withIntermediateDirectories: true)
        }
        try "rpm\n".write(toFile: tree + "/9/Everything/x86_64/Packages/a/a.rpm", atomically: true, encoding: .utf8)
        try Self.standIn.write(toFile: scratch + "/standin.py", atomically: true, encoding: .utf8)
        let port = try RsyncDaemon.freePort()
        let server = Process()
        server.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        server.arguments = ["python3", scratch + "/standin.py", "\(port)", scratch + "/received.json"]
        server.standardOutput = FileHandle.nullDevice
        server.standardError = FileHandle.nullDevice
        try server.run()
        defer {
            kill(server.processIdentifier, SIGKILL)
            server.waitUntilExit()
        }
        #expect(RsyncDaemon.waitForListener(port: port, while: server), "the stand-in did not start")
        let url = "http://127.0.0.1:\(port)/RPC2"
        try Self.conf(server: url, tree: tree).write(toFile: scratch + "/report_mirror.conf", atomically: true, encoding: .utf8)
        let mmNode = SyncCommandTests.binaries + "/mm-node"

        let ok = try await ToolRun.run(mmNode, ["report-mirror", "--config", scratch + "/report_mirror.conf"], environment: ["MM_RESULT": "success"])
        #expect(ok.status == 0 && ok.stdout.contains("report-mirror: \(url): checked in successful"), "\(ok.combined)")
        let data = try Data(contentsOf: URL(fileURLWithPath: scratch + "/received.json"))
        let received = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        #expect(received["version"] as? Int == 0)
        #expect((received["site"] as? [String: String]) == ["enabled": "1", "name": "FCIX", "password": "s3cret"])
        #expect((received["host"] as? [String: String]) == ["enabled": "1", "name": "example-isp.mm.fcix.net"])
        #expect((received["global"] as? [String: String])?["server"] == url)
        let epel = try #require(received["fedora epel"] as? [String: Any], "\(received.keys)")
        #expect(epel["path"] == nil && epel["enabled"] as? String == "1")
        let dirtree = try #require(epel["dirtree"] as? [String: [String: Int]])
        #expect(dirtree.keys.sorted() == ["", "9", "9/Everything", "9/Everything/x86_64", "9/Everything/x86_64/Packages", "9/Everything/x86_64/Packages/a", "9/Everything/x86_64/repodata"], "\(dirtree.keys.sorted())")
        #expect(received["fedora linux"] == nil, "a disabled category is not reported")

        // A failed run is not reported: MirrorManager would send clients to a tree that is not whole.
        try FileManager.default.removeItem(atPath: scratch + "/received.json")
        let failed = try await ToolRun.run(mmNode, ["report-mirror", "--config", scratch + "/report_mirror.conf"], environment: ["MM_RESULT": "failed"])
        #expect(failed.status == 0 && failed.stdout.contains("not checking in: the run ended failed"), "\(failed.combined)")
        #expect(!FileManager.default.fileExists(atPath: scratch + "/received.json"))
        // A node not registered with MirrorManager: nothing to do.
        let none = try await ToolRun.run(mmNode, ["report-mirror", "--config", scratch + "/none.conf"], environment: ["MM_RESULT": "success"])
        #expect(none.status == 0 && none.stdout.contains("not registered with MirrorManager"), "\(none.combined)")
        // The server refuses (a wrong site password): the hook fails in its words.
        try Self.conf(server: url, tree: tree, password: "wrong").write(toFile: scratch + "/wrong.conf", atomically: true, encoding: .utf8)
        let refused = try await ToolRun.run(mmNode, ["report-mirror", "--config", scratch + "/wrong.conf"], environment: ["MM_RESULT": "success"])
        #expect(refused.status == 1 && refused.stderr.contains("refused the check-in") && refused.stderr.contains("bad site password"), "\(refused.combined)")
    }

    @Test("a report_mirror.conf missing what MirrorManager needs names every problem")
    func badConf() {
        do {
            _ = try MirrorManagerCheckin.parse("[global]\nenabled=1\nserver=ftp://x\n[host]\nname=n\n[Fedora Linux]\nenabled=1\nstray line\n", file: "report_mirror.conf")
            Issue.record("accepted")
        } catch {
            for expected in ["site: missing section [site]", "host.enabled: missing", "global.server: expected an http(s):// URL", "report_mirror.conf:8: expected name = value", "fedora linux: a category needs enabled and path"] {
                #expect(error.description.contains(expected), "\(expected) missing from: \(error)")
            }
        }
    }
}
