import Foundation
import MicromirrorTestSupport
import NodeRuntimeCore
import SystemKit
import Testing

/// The machine and each project's sync state at `/metrics`: parsed from the kernel's own files,
/// checked by Prometheus' own tools (promtool's linter, the Python client's parser).
@Suite("Host metrics")
struct HostMetricsTests {
    @Test("/proc/net/dev: every interface but loopback, bytes, packets, errors and drops each way")
    func networkCounters() {
        let text = """
            Inter-|   Receive                                                |  Transmit
             face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
                lo: 1296      16    0    0    0     0          0         0     1296      16    0    0    0     0       0          0
            enp1s0: 987654321 812345    2    7    0     0          0      1204 123456789012 9876543    0    3    0     0       0          0
            """
        let counters = NetworkCounters.parse(text)
        #expect(counters == [
            NetworkCounters(
                interface: "enp1s0", receivedBytes: 987_654_321, receivedPackets: 812_345, receiveErrors: 2, receiveDrops: 7,
                sentBytes: 123_456_789_012, sentPackets: 9_876_543, sendErrors: 0, sendDrops: 3
            )
        ])
        // This machine's own file parses too (at least one interface is up, or none but lo).
        let live = NetworkCounters.read()
        #expect(live.allSatisfy { $0.interface != "lo" && $0.receivedBytes >= 0 })
    }

    @Test("the CPU temperature comes from k10temp (the T620) when it is there, and is absent when no known sensor is")
    func temperature() throws {
        let dir = try ToolRun.scratchDirectory("hwmon")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for (entry, name, milli) in [("hwmon0", "acpitz", "27800"), ("hwmon1", "nvme", "38850")] {
            try FileManager.default.createDirectory(atPath: "\(dir)/\(entry)", withIntermediateDirectories: true)
            try "\(name)\n".write(toFile: "\(dir)/\(entry)/name", atomically: true, encoding: .utf8)
            try "\(milli)\n".write(toFile: "\(dir)/\(entry)/temp1_input", atomically: true, encoding: .utf8)
        }
        #expect(CPUTemperature.celsius(hwmon: dir) == nil)
        try FileManager.default.createDirectory(atPath: "\(dir)/hwmon2", withIntermediateDirectories: true)
        try "k10temp\n".write(toFile: "\(dir)/hwmon2/name", atomically: true, encoding: .utf8)
        try "45250\n".write(toFile: "\(dir)/hwmon2/temp1_input", atomically: true, encoding: .utf8)
        #expect(CPUTemperature.celsius(hwmon: dir) == 45.25)
    }

    @Test("a live /metrics passes promtool's check, and the Python client reads the network, mm-data and each project's state, freshness and size from it")
    func liveMetrics() async throws {
        let state = try ToolRun.scratchDirectory("metrics-state")
        defer { try? FileManager.default.removeItem(atPath: state) }
        let history = try SyncHistory.open(stateDirectory: state)
        let synced = Date().addingTimeInterval(-600)
        var good = ProjectSync.Report(project: "almalinux", upstream: "rsync://u/", started: synced - 60, finished: synced, succeeded: true)
        good.plan = ProjectSync.Plan(files: 3, deletions: 0, bytes: 100, size: 123_456)
        try history.record(good)
        try AtomicFile.write(Array(good.json()), to: state + "/almalinux.json")
        let failed = ProjectSync.Report(project: "archlinux", upstream: "rsync://u/", started: synced, finished: synced + 5, succeeded: false, failure: "test")
        try history.record(failed)
        try AtomicFile.write(Array(failed.json()), to: state + "/archlinux.json")

        let server = try await LiveServer.start(configure: {
            $0.projects = ["almalinux", "archlinux", "rocky"]
            $0.syncStateDirectory = state
        }) { root in
            for project in ["almalinux", "archlinux", "rocky"] { try FileManager.default.createDirectory(atPath: root + "/" + project, withIntermediateDirectories: true) }
        }
        defer { Task { await server.stop() } }
        let text = try await run("curl", ["-sS", server.base + "/metrics"]).output
        let file = state + "/metrics.txt"
        try text.write(toFile: file, atomically: true, encoding: .utf8)

        // Prometheus' own linter: valid exposition text. It exits 1 on text it cannot parse and 3 on
        // lint notes; the only note allowed is the missing HELP line (swift-metrics has no help text).
        let lint = try await run("sh", ["-c", "promtool check metrics < \(file)"])
        let notes = lint.output.split(separator: "\n").filter { !$0.hasSuffix(" no help text") }
        #expect((lint.status == 0 || lint.status == 3) && notes.isEmpty, "promtool (\(lint.status)): \(lint.output)\n\(text)")

        // The official Python client's parser reads the samples back.
        let script = """
            import sys, json
            from prometheus_client.parser import text_string_to_metric_families
            out = {}
            for family in text_string_to_metric_families(open(sys.argv[1]).read()):
                for s in family.samples:
                    key = s.name + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items())) + "}"
                    out[key] = s.value
            print(json.dumps(out))
            """
        let parsed = try await run("/usr/bin/python3", ["-c", script, file])
        #expect(parsed.status == 0, "\(parsed.output)")
        let samples = try #require(try JSONSerialization.jsonObject(with: Data(parsed.output.utf8)) as? [String: Double], "\(parsed.output)")

        // mm-data: the filesystem of the root, as statvfs says (free moves a little while the suite runs).
        let size = try DiskSpace.total(at: server.root)
        #expect(samples["micromirror_data_size_bytes{}"] == Double(size), "\(samples)")
        let free = try #require(samples["micromirror_data_free_bytes{}"])
        #expect(free > 0 && free <= Double(size))
        // Each project's state: one of the states is 1, the others 0.
        #expect(samples["micromirror_sync_state{project=\"almalinux\",state=\"success\"}"] == 1)
        #expect(samples["micromirror_sync_state{project=\"almalinux\",state=\"failed\"}"] == 0)
        #expect(samples["micromirror_sync_state{project=\"archlinux\",state=\"failed\"}"] == 1)
        #expect(samples["micromirror_sync_state{project=\"rocky\",state=\"never\"}"] == 1)
        #expect(samples["micromirror_sync_stale{project=\"almalinux\"}"] == 0 && samples["micromirror_sync_stale{project=\"archlinux\"}"] == 1)
        let age = try #require(samples["micromirror_sync_freshness_age_seconds{project=\"almalinux\"}"])
        #expect(age >= 600 && age < 3600, "freshness age \(age)")
        #expect(samples["micromirror_sync_freshness_age_seconds{project=\"archlinux\"}"] == nil, "a project that never synced has no freshness age")
        #expect(samples["micromirror_sync_size_bytes{project=\"almalinux\"}"] == 123_456)
        // The network: what /proc/net/dev said at the scrape, for every interface but loopback.
        let interfaces = NetworkCounters.read().map(\.interface)
        for name in interfaces {
            #expect(samples["micromirror_network_received_bytes{interface=\"\(name)\"}"] != nil, "no counters for \(name): \(samples.keys.sorted())")
        }
        #expect(!samples.keys.contains { $0.contains("interface=\"lo\"") })
    }
}
