import Foundation
import ImageBuilderCore
import Logging
import MicromirrorKit
import MicromirrorTestSupport
import NodeRuntimeCore
import ServiceLifecycle
import SystemKit
import Testing

/// Nodes reporting to the watchtower over a real mosquitto broker, and the NOC's `mm-image fleet`
/// reading them back: up, down by their last will when killed, down when stopped, down when silent.
@Suite("Telemetry to the watchtower", .serialized)
struct TelemetryTests {
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

    /// `mm-image fleet --json` against the broker, decoded.
    static func fleet(_ broker: MosquittoBroker) async throws -> [String: [String: Any]] {
        let result = try await ToolRun.run(SyncCommandTests.binaries + "/mm-image", ["fleet", "--broker", "mqtt://127.0.0.1:\(broker.port)", "--json"])
        guard result.status == 0, let nodes = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [[String: Any]] else {
            throw TestError("mm-image fleet failed (\(result.status)): \(result.combined)")
        }
        return Dictionary(uniqueKeysWithValues: nodes.map { ($0["node"] as? String ?? "", $0) })
    }

    @Test("two nodes report (one mm-node run process, one in-process publisher); mm-image fleet lists both up with what they run; its limits and load too; the killed one is down by its last will, the stopped one by its goodbye; the watch runs its hook program and POSTs to a webhook once per change")
    func fleetOverMosquitto() async throws {
        let broker = try MosquittoBroker()
        let dir = try ToolRun.scratchDirectory("telemetry")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // Node A: the real program, `mm-node run --services telemetry`, with a node file and a sync state.
        let example = try String(contentsOfFile: Self.packageRoot + "/nodes/example.yaml", encoding: .utf8)
        let nodeFile = dir + "/a.yaml"
        try example.replacingOccurrences(of: "name: example-isp", with: "name: isp-a")
            .replacingOccurrences(of: "target: mqtts://watchtower.fcix.net:8883", with: "target: mqtt://127.0.0.1:\(broker.port)")
            .write(toFile: nodeFile, atomically: true, encoding: .utf8)
        let state = dir + "/state"
        try FileManager.default.createDirectory(atPath: state, withIntermediateDirectories: true)
        let good = ProjectSync.Report(project: "almalinux", upstream: "rsync://u/", started: Date() - 120, finished: Date() - 60, succeeded: true)
        try good.json().write(to: URL(fileURLWithPath: state + "/almalinux.json"))
        let nodeA = Process()
        nodeA.executableURL = URL(fileURLWithPath: SyncCommandTests.binaries + "/mm-node")
        nodeA.arguments = [
            "run", "--services", "telemetry", "--config", nodeFile, "--root", dir, "--sync-state", state, "--require-mount", "none", "--recipes", Self.packageRoot + "/recipes",
        ]
        nodeA.standardOutput = FileHandle.nullDevice
        nodeA.standardError = FileHandle(forWritingAtPath: "/dev/null")
        try nodeA.run()
        defer { if nodeA.isRunning { kill(nodeA.processIdentifier, SIGKILL) } }

        // Node B: the publisher in this process, on its own report.
        let report = NodeReport(
            node: "isp-b.mm.fcix.net", sponsor: "isp-b", version: "0.3.0", build: 103, slot: "b", blessed: false, rolledBack: [102],
            addresses: ["192.0.2.20/24"], projects: [.init(name: "archlinux", state: "failed", lastSuccess: nil, stale: true, size: nil)],
            sentBytes: 5_000_000, receivedBytes: 70_000, dataFreeBytes: 1 << 30, time: Date()
        )
        let publisher = try TelemetryPublisher(target: "mqtt://127.0.0.1:\(broker.port)", node: report.node, logger: Logger(label: "test")) {
            var now = report
            now.time = Date()
            return now
        }
        let group = ServiceGroup(services: [publisher], logger: Logger(label: "test"))
        let running = Task { try await group.run() }

        var nodes: [String: [String: Any]] = [:]
        #expect(try await eventually(seconds: 60) {
            nodes = (try? await Self.fleet(broker)) ?? [:]
            // A sends its load just after its state: wait for both.
            return nodes["isp-a.mm.fcix.net"]?["up"] as? Bool == true && nodes["isp-a.mm.fcix.net"]?["load"] != nil && nodes["isp-b.mm.fcix.net"]?["up"] as? Bool == true
        }, "\(nodes)")
        let a = try #require(nodes["isp-a.mm.fcix.net"])
        #expect(a["sponsor"] as? String == "isp-a" && (a["addresses"] as? [String]) == ["192.0.2.10/24", "2001:db8:10::10/64"], "\(a)")
        let projects = (a["projects"] as? [[String: Any]]) ?? []
        #expect(projects.map { $0["name"] as? String } == ["ubuntu-releases", "almalinux", "archlinux"], "\(projects)")
        #expect(projects.first { $0["name"] as? String == "almalinux" }?["state"] as? String == "success")
        #expect(projects.first { $0["name"] as? String == "archlinux" }?["state"] as? String == "never")
        #expect((a["staleProjects"] as? [String]) == [], "stale as /status says it (no success within a day, once a run finished): \(a)")
        // A's limits in its state, and its load message beside it (the table shows the load).
        let limits = try #require(a["limits"] as? [String: Any], "\(a)")
        #expect(limits["httpConnections"] as? Int == 10_000 && limits["rsyncConnections"] as? Int == 10 && limits["concurrentSyncs"] as? Int == 2, "\(limits)")
        #expect((limits["syncBandwidth"] as? [String: String]) == ["ubuntu-releases": "25M", "almalinux": "25M", "archlinux": "10M"], "the recipes' bwlimit: \(limits)")
        let load = try #require(a["load"] as? [String: Any], "\(a)")
        #expect((load["load"] as? [Double])?.count == 3 && load["connections"] is Int && load["sentBitsPerSecond"] is Int, "\(load)")
        let b = try #require(nodes["isp-b.mm.fcix.net"])
        #expect(b["version"] as? String == "0.3.0" && b["slot"] as? String == "b" && b["blessed"] as? Bool == false && (b["rolledBack"] as? [Int]) == [102], "\(b)")
        // The table for people says the same.
        let table = try await ToolRun.run(SyncCommandTests.binaries + "/mm-image", ["fleet", "--broker", "mqtt://127.0.0.1:\(broker.port)"])
        #expect(table.status == 0 && table.stdout.contains("isp-b.mm.fcix.net") && table.stdout.contains("0.3.0 (103)") && table.stdout.contains("b (trial)"), "\(table.combined)")
        #expect(table.stdout.contains(" load, ") && table.stdout.contains(" conn, ") && table.stdout.contains("Mbit/s out"), "\(table.combined)")

        // The NOC's watcher, with an alert hook that notes each event it is called for.
        let hookLog = dir + "/alerts.log"
        let hook = dir + "/alert.sh"
        try "#!/bin/sh\necho \"$MM_FLEET_EVENT $MM_FLEET_NODE $MM_FLEET_SUBJECT\" >> \(hookLog)\n".write(toFile: hook, atomically: true, encoding: .utf8)
        chmod(hook, 0o755)
        /// `mm-image fleet --watch` with `hook`, its output in `out`.
        func startWatcher(hook: String, out: String) throws -> Process {
            let watcher = Process()
            watcher.executableURL = URL(fileURLWithPath: SyncCommandTests.binaries + "/mm-image")
            watcher.arguments = ["fleet", "--broker", "mqtt://127.0.0.1:\(broker.port)", "--watch", "--every", "0.5", "--hook", hook]
            FileManager.default.createFile(atPath: out, contents: nil)
            watcher.standardOutput = FileHandle(forWritingAtPath: out)
            watcher.standardError = FileHandle(forWritingAtPath: out)
            try watcher.run()
            return watcher
        }
        let watcherOut = dir + "/watch.out"
        let watcher = try startWatcher(hook: hook, out: watcherOut)
        defer { if watcher.isRunning { kill(watcher.processIdentifier, SIGKILL) } }
        func text(_ path: String) -> String { (try? String(contentsOfFile: path, encoding: .utf8)) ?? "" }
        #expect(try await eventually(seconds: 30) { text(watcherOut).contains("watching 2 nodes") }, "\(text(watcherOut))")
        // A second watcher with a webhook: a real HTTP server (Python's) on loopback notes each POST body.
        let webhookPort = try RsyncDaemon.freePort()
        let posts = dir + "/posts.jsonl"
        let receiver = Process()
        receiver.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        receiver.arguments = [
            "-c",
            """
            import http.server, sys
            class H(http.server.BaseHTTPRequestHandler):
                def do_POST(self):
                    body = self.rfile.read(int(self.headers['Content-Length']))
                    with open(sys.argv[2], 'ab') as f: f.write(self.headers['Content-Type'].encode() + b' ' + body + b'\\n')
                    self.send_response(204); self.end_headers()
                def log_message(self, *a): pass
            http.server.HTTPServer(('127.0.0.1', int(sys.argv[1])), H).serve_forever()
            """,
            "\(webhookPort)", posts,
        ]
        try receiver.run()
        defer { if receiver.isRunning { kill(receiver.processIdentifier, SIGKILL) } }
        #expect(RsyncDaemon.waitForListener(port: webhookPort, while: receiver))
        let webhookOut = dir + "/webhook-watch.out"
        let webhookWatcher = try startWatcher(hook: "http://127.0.0.1:\(webhookPort)/alerts", out: webhookOut)
        defer { if webhookWatcher.isRunning { kill(webhookWatcher.processIdentifier, SIGKILL) } }
        #expect(try await eventually(seconds: 30) { text(webhookOut).contains("watching 2 nodes") }, "\(text(webhookOut))")

        // A dies without a word: the broker publishes its will, and the fleet says it is down at once.
        kill(nodeA.processIdentifier, SIGKILL)
        nodeA.waitUntilExit()
        #expect(try await eventually(seconds: 30) {
            nodes = (try? await Self.fleet(broker)) ?? [:]
            return nodes["isp-a.mm.fcix.net"]?["up"] as? Bool == false
        }, "\(nodes)")
        #expect((nodes["isp-a.mm.fcix.net"]?["why"] as? String)?.contains("last will") == true && nodes["isp-b.mm.fcix.net"]?["up"] as? Bool == true, "\(nodes)")

        // The hook ran once for it, and not again while it stays down.
        #expect(try await eventually(seconds: 30) { text(hookLog).contains("down isp-a.mm.fcix.net") }, "\(text(watcherOut))")
        try await Task.sleep(for: .seconds(2))
        #expect(text(hookLog) == "down isp-a.mm.fcix.net \n", "\(text(hookLog))")
        // The webhook got it once too, as JSON.
        #expect(try await eventually(seconds: 30) { text(posts).contains("isp-a.mm.fcix.net") }, "\(text(webhookOut))")
        let lines = text(posts).split(separator: "\n")
        #expect(lines.count == 1 && lines[0].hasPrefix("application/json {"), "\(text(posts))")
        let alert = try JSONSerialization.jsonObject(with: Data(lines[0].dropFirst("application/json ".count).utf8)) as? [String: Any]
        #expect(alert?["event"] as? String == "down" && alert?["node"] as? String == "isp-a.mm.fcix.net" && (alert?["detail"] as? String)?.contains("last will") == true, "\(text(posts))")
        #expect(text(watcherOut).contains("isp-a.mm.fcix.net down: offline"), "\(text(watcherOut))")

        // B stops cleanly (no will is sent for a clean disconnect): it says goodbye itself.
        await group.triggerGracefulShutdown()
        _ = try? await running.value
        #expect(try await eventually(seconds: 30) {
            nodes = (try? await Self.fleet(broker)) ?? [:]
            return nodes["isp-b.mm.fcix.net"]?["up"] as? Bool == false
        }, "\(nodes)")
        #expect(try await eventually(seconds: 30) { text(hookLog).contains("down isp-b.mm.fcix.net") }, "\(text(watcherOut))")
        kill(watcher.processIdentifier, SIGKILL)
        watcher.waitUntilExit()
        #expect(text(hookLog) == "down isp-a.mm.fcix.net \ndown isp-b.mm.fcix.net \n", "\(text(hookLog))")
        broker.stop()
    }

    @Test("each change is an event once: down, up, a project stale and fresh again, a new rollback; a node seen first counts as up; nothing changed, nothing said")
    func events() throws {
        let now = Date()
        func node(_ name: String, up: Bool, stale: [String] = [], rolledBack: [Int64] = []) -> FleetView.Node {
            FleetView.Node(
                node: name, sponsor: "s", up: up, why: up ? nil : "offline", lastHeard: now, version: "0.1.0", build: 1, slot: "a", blessed: true,
                rolledBack: rolledBack, addresses: [], sentBytes: 0, dataFreeBytes: nil, staleProjects: stale, projects: []
            )
        }
        let before = FleetView(nodes: [node("a", up: true), node("b", up: true, stale: ["arch"]), node("c", up: false)])
        let after = FleetView(nodes: [node("a", up: false), node("b", up: true, stale: ["alma"], rolledBack: [7]), node("c", up: true), node("d", up: true)])
        let events = after.events(since: before).map { "\($0.node) \($0.kind.rawValue) \($0.subject ?? "")" }
        #expect(events == ["a down ", "b stale alma", "b fresh arch", "b rolled-back 7", "c up ", "d up "], "\(events)")
        #expect(after.events(since: after).isEmpty)
    }

    @Test("a node silent for longer than the threshold is down; a report for another node's topic is ignored")
    func silentNode() throws {
        let now = Date()
        func report(_ node: String, at time: Date) throws -> [UInt8] {
            try NodeReport(
                node: node, sponsor: "s", version: nil, build: nil, slot: nil, blessed: nil, rolledBack: [], addresses: [], projects: [],
                sentBytes: 0, receivedBytes: 0, dataFreeBytes: nil, time: time
            ).json()
        }
        let view = FleetView(
            messages: [
                "micromirror/nodes/fresh/state": try report("fresh", at: now - 60), "micromirror/nodes/fresh/status": Array("online".utf8),
                "micromirror/nodes/quiet/state": try report("quiet", at: now - 3600), "micromirror/nodes/quiet/status": Array("online".utf8),
                // Published under one name, claiming another: not believed.
                "micromirror/nodes/mallory/state": try report("fresh", at: now),
            ],
            now: now, downAfter: 900
        )
        #expect(view.nodes.map(\.node) == ["fresh", "quiet"])
        #expect(view.nodes[0].up && !view.nodes[1].up && view.nodes[1].why == "not heard from for 60 min (down after 15 min)", "\(view.nodes)")
    }
    @Test("mirror lists: only nodes up and fresh for the project, freshest first, in plain, pacman, Metalink 4 and MirrorZ form")
    func mirrorLists() throws {
        let now = Date()
        func node(_ name: String, up: Bool = true, alma: NodeReport.Project?) -> FleetView.Node {
            FleetView.Node(
                node: name, sponsor: "s", up: up, why: up ? nil : "offline", lastHeard: now, version: nil, build: nil, slot: nil, blessed: nil,
                rolledBack: [], addresses: [], sentBytes: 0, dataFreeBytes: nil, staleProjects: [], projects: alma.map { [$0] } ?? []
            )
        }
        let view = FleetView(nodes: [
            node("older.mm.fcix.net", alma: .init(name: "almalinux", state: "success", lastSuccess: now - 3600, stale: false, size: nil)),
            node("newer.mm.fcix.net", alma: .init(name: "almalinux", state: "failed", lastSuccess: now - 60, stale: false, size: nil)),
            node("down.mm.fcix.net", up: false, alma: .init(name: "almalinux", state: "success", lastSuccess: now, stale: false, size: nil)),
            node("stale.mm.fcix.net", alma: .init(name: "almalinux", state: "failed", lastSuccess: now - 200_000, stale: true, size: nil)),
            node("never.mm.fcix.net", alma: .init(name: "almalinux", state: "never", lastSuccess: nil, stale: false, size: nil)),
            node("other.mm.fcix.net", alma: nil),
        ])
        let list = FleetMirrorList(view: view, project: "almalinux")
        #expect(try list.render(.plain) == "http://newer.mm.fcix.net/almalinux/\nhttp://older.mm.fcix.net/almalinux/\n")
        #expect(try list.render(.arch).hasSuffix("Server = http://newer.mm.fcix.net/almalinux/$repo/os/$arch\nServer = http://older.mm.fcix.net/almalinux/$repo/os/$arch\n"))
        let metalink = try list.render(.metalink, file: "/9/BaseOS/x86_64/os/repodata/repomd.xml")
        #expect(metalink.contains("<file name=\"repomd.xml\">") && metalink.contains("<url priority=\"1\">http://newer.mm.fcix.net/almalinux/9/BaseOS/x86_64/os/repodata/repomd.xml</url>"), "\(metalink)")
        #expect(metalink.contains("<url priority=\"2\">http://older.mm.fcix.net/"), "\(metalink)")
        #expect(throws: (any Error).self) { try list.render(.metalink) }
        let sites = try #require(try JSONSerialization.jsonObject(with: Data(try list.render(.mirrorz).utf8)) as? [[String: String]])
        #expect(sites.map { $0["url"] } == ["http://newer.mm.fcix.net/mirrorz.json", "http://older.mm.fcix.net/mirrorz.json"])
    }

    @Test("a real Prometheus scrapes a live node found through mm-image fleet targets, and answers a query about it")
    func prometheusScrapesTheFleet() async throws {
        let broker = try MosquittoBroker()
        defer { broker.stop() }
        let dir = try ToolRun.scratchDirectory("prometheus")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let server = try await LiveServer.start(configure: { $0.projects = ["almalinux"] }) { root in
            try FileManager.default.createDirectory(atPath: root + "/almalinux", withIntermediateDirectories: true)
        }
        defer { Task { await server.stop() } }
        // The node's report, as its telemetry role leaves it on the broker (its address: loopback here).
        let report = NodeReport(
            node: "scraped.mm.fcix.net", sponsor: "isp-p", version: "0.1.0", build: 1, slot: "a", blessed: true, rolledBack: [], addresses: ["127.0.0.1/8"],
            projects: [.init(name: "almalinux", state: "success", lastSuccess: Date() - 30, stale: false, size: 1)], sentBytes: 0, receivedBytes: 0,
            dataFreeBytes: nil, time: Date()
        )
        let published = try await ToolRun.run(
            "mosquitto_pub", ["-h", "127.0.0.1", "-p", "\(broker.port)", "-q", "1", "-r", "-t", NodeReport.stateTopic(node: report.node), "-m", String(decoding: try report.json(), as: UTF8.self)]
        )
        #expect(published.status == 0, "\(published.combined)")
        let mmImage = SyncCommandTests.binaries + "/mm-image"
        let brokerURL = "mqtt://127.0.0.1:\(broker.port)"
        let list = try await ToolRun.run(mmImage, ["fleet", "mirrorlist", "almalinux", "--broker", brokerURL])
        #expect(list.status == 0 && list.stdout == "http://scraped.mm.fcix.net/almalinux/\n", "\(list.combined)")
        let targets = dir + "/fleet.json"
        let written = try await ToolRun.run(mmImage, ["fleet", "targets", "--broker", brokerURL, "--port", "\(server.port)", "--out", targets])
        #expect(written.status == 0, "\(written.combined)")
        #expect((try? String(contentsOfFile: targets, encoding: .utf8))?.contains("\"127.0.0.1:\(server.port)\"") == true)

        // Prometheus itself, reading the targets file, scraping every second.
        let webPort = try RsyncDaemon.freePort()
        try """
            global:
              scrape_interval: 1s
            scrape_configs:
              - job_name: micromirror
                file_sd_configs:
                  - files: [\(targets)]
                    refresh_interval: 1s
            """.write(toFile: dir + "/prometheus.yml", atomically: true, encoding: .utf8)
        let prometheus = Process()
        prometheus.executableURL = URL(fileURLWithPath: "/usr/bin/prometheus")
        prometheus.arguments = [
            "--config.file=\(dir)/prometheus.yml", "--storage.tsdb.path=\(dir)/data", "--web.listen-address=127.0.0.1:\(webPort)",
        ]
        prometheus.standardOutput = FileHandle.nullDevice
        prometheus.standardError = FileHandle.nullDevice
        try prometheus.run()
        defer {
            kill(prometheus.processIdentifier, SIGKILL)
            prometheus.waitUntilExit()
        }
        func query(_ promql: String) async -> [[String: Any]] {
            let encoded = promql.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? promql
            guard let answer = try? await run("curl", ["-sS", "http://127.0.0.1:\(webPort)/api/v1/query?query=\(encoded)"]),
                let json = try? JSONSerialization.jsonObject(with: Data(answer.output.utf8)) as? [String: Any],
                let data = json["data"] as? [String: Any], let result = data["result"] as? [[String: Any]]
            else { return [] }
            return result
        }
        var answer: [[String: Any]] = []
        #expect(try await eventually(seconds: 90) {
            answer = await query("micromirror_data_size_bytes{job=\"micromirror\",node=\"scraped.mm.fcix.net\",sponsor=\"isp-p\"}")
            return !answer.isEmpty
        }, "Prometheus never scraped the node")
        let value = (answer.first?["value"] as? [Any])?.last as? String
        #expect(value.flatMap(Double.init) == Double(try DiskSpace.total(at: server.root)), "\(answer)")
        let up = await query("up{node=\"scraped.mm.fcix.net\"}")
        #expect(((up.first?["value"] as? [Any])?.last as? String) == "1", "\(up)")
    }
}
