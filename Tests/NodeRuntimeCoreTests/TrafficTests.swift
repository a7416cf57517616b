import Foundation
import MicromirrorKit
import MicromirrorTestSupport
import NodeRuntimeCore
import Testing

/// The traffic history: what a known number of bytes leaves in it, how it keeps its size, and the
/// graphs `/status` draws from it.
@Suite("Traffic history", .serialized)
struct TrafficTests {
    @Test("bytes add up per series in minute and hour rows, buckets sum them, rows past each window go")
    func history() throws {
        let dir = try ToolRun.scratchDirectory("traffic")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let history = try TrafficHistory(path: dir + "/" + TrafficHistory.fileName)
        let now = Date(timeIntervalSince1970: 1_800_000_000)  // a whole hour
        let alma = TrafficHistory.projectSeries("almalinux")
        try history.add([alma: 100, "nic:eth0:sent": 1000], at: now - 3 * 86400)  // gone from minutes once later rows come
        try history.add([alma: 200], at: now - 1200)
        try history.add([alma: 300], at: now - 1190)  // the same minute: added up
        try history.add([alma: 50, "nic:eth0:sent": 7000], at: now - 60)
        let minutes = try history.buckets(.minute, from: now - 86400, to: now, bucket: 600)
        #expect(minutes[alma]?.map(\.bytes) == [500, 50], "\(minutes)")
        #expect(minutes["nic:eth0:sent"]?.map(\.bytes) == [7000])
        let hours = try history.buckets(.hour, from: now - 30 * 86400, to: now, bucket: 3600)
        #expect(hours[alma]?.map(\.bytes) == [100, 550], "the hour rows keep three days ago: \(hours)")
        #expect(try history.rowCounts().minutes == 3, "the 3-day-old minute rows were dropped")
        // A year and a day later every row has aged out of both windows but the new one.
        try history.add([alma: 1], at: now + 367 * 86400)
        #expect(try history.rowCounts() == (minutes: 1, hours: 1))
    }

    @Test("samples: growth counts, a series new since the last sample counts from zero, a counter that went back starts again")
    func deltas() {
        #expect(TrafficRecorder.deltas(from: ["a": 10, "b": 5], to: ["a": 25, "b": 5, "c": 3]) == ["a": 15, "c": 3])
        #expect(TrafficRecorder.deltas(from: ["nic:eth0:sent": 1_000_000], to: ["nic:eth0:sent": 4000]) == ["nic:eth0:sent": 4000])
    }

    @Test("mm-node run: bytes fetched with curl land in the history as sent, and /status draws them as SVG and lists them in JSON")
    func liveServer() async throws {
        let (dir, paths) = try RunCommandTests.node(projects: ["almalinux", "archlinux"])
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: paths.mirror + "/almalinux", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: paths.mirror + "/archlinux", withIntermediateDirectories: true)
        try Data(repeating: 0x5A, count: 1_000_000).write(to: URL(fileURLWithPath: paths.mirror + "/almalinux/big.iso"))
        try Data(repeating: 0x41, count: 3_000).write(to: URL(fileURLWithPath: paths.mirror + "/archlinux/core.db"))
        let port = try RsyncDaemon.freePort()
        let server = try RunCommandTests.start(paths, port: port, services: "serve", extra: ["--traffic-interval", "1"])
        defer { Task { try? await RunCommandTests.stop(server) } }
        // Ready once it answers (the root's listing counts as "other", not as either project).
        #expect(try await eventually(seconds: 60) { ((try? await RunCommandTests.get("http://127.0.0.1:\(port)/")) ?? "").contains("almalinux") })
        for url in ["almalinux/big.iso", "almalinux/big.iso", "archlinux/core.db"] {
            let fetched = try await ToolRun.run("curl", ["-sS", "-o", "/dev/null", "-w", "%{size_download}", "http://127.0.0.1:\(port)/\(url)"])
            #expect(fetched.status == 0, "\(fetched.combined)")
        }
        let path = paths.traffic + "/" + TrafficHistory.fileName
        var sent: [String: Int64] = [:]
        #expect(try await eventually(seconds: 60) {
            guard let history = try? TrafficHistory(path: path, readOnly: true),
                let rows = try? history.buckets(.minute, from: Date() - 3600, to: Date() + 60, bucket: 3600)
            else { return false }
            sent = rows.mapValues { $0.reduce(0) { $0 + $1.bytes } }
            return sent[TrafficHistory.projectSeries("almalinux")] == 2_000_000 && sent[TrafficHistory.projectSeries("archlinux")] == 3_000
        }, "\(sent)")

        let html = try await RunCommandTests.get("http://127.0.0.1:\(port)/status")
        #expect(html.contains("<h2>Traffic</h2>") && html.contains("<svg") && html.contains("Served per project, last 24 hours"), "\(html.prefix(3000))")
        #expect(html.contains(">almalinux</text>") && html.contains("<polyline"), "the graph names and draws the project")
        #expect(!html.contains("<script"), "the status page runs no script")
        let json = try await RunCommandTests.get("http://127.0.0.1:\(port)/status?format=json")
        let page = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any], "\(json)")
        let traffic = (page["traffic"] as? [[String: Any]]) ?? []
        let alma = traffic.first { $0["series"] as? String == "project:almalinux" }
        #expect((alma?["dayBytes"] as? Int) == 2_000_000 && (alma?["monthBytes"] as? Int) == 2_000_000, "\(traffic)")
    }

    @Test("the series a node samples: each project's bytes sent and each interface both ways")
    func totals() {
        let metrics = ServeMetrics()
        metrics.record(project: "almalinux", status: 200, bytes: 1234)
        metrics.record(project: "almalinux", status: 404, bytes: 100)
        let nic = NetworkCounters(
            interface: "enp1s0", receivedBytes: 10, receivedPackets: 1, receiveErrors: 0, receiveDrops: 0, sentBytes: 20, sentPackets: 1, sendErrors: 0, sendDrops: 0
        )
        #expect(TrafficRecorder.totals(metrics: metrics, network: [nic]) == ["project:almalinux": 1334, "nic:enp1s0:sent": 20, "nic:enp1s0:received": 10])
    }

    @Test("the graph: one line per series scaled to the peak, labelled, escaped; rates in bits per second")
    func graph() {
        let from = Date(timeIntervalSince1970: 1_800_000_000)
        let svg = TrafficGraph.svg(
            title: "t", series: ["a<b": [(from, 75_000_000)], "c": [(from + 600, 1)]], from: from, to: from + 1200, bucket: 600
        )
        #expect(svg.contains(">a&lt;b</text>") && svg.components(separatedBy: "<polyline").count == 3, "\(svg)")
        #expect(svg.contains(">1.0 Mbit/s</text>"), "peak 75 MB in 600 s is 1 Mbit/s: \(svg)")
        #expect(TrafficGraph.bitRate(950) == "950 bit/s" && TrafficGraph.bitRate(1_250_000_000) == "1.2 Gbit/s")
    }
}
