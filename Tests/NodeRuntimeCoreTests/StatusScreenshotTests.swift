import Foundation
import MicromirrorTestSupport
import NodeRuntimeCore
import Testing

/// `/status` as a person sees it: rendered by headless Chromium from a live server with a month of
/// traffic and projects in every state. `MM_SCREENSHOT_OUT=PATH` keeps the PNG (the README's).
@Suite("Status page in a browser")
struct StatusScreenshotTests {
    static let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].first { FileManager.default.isExecutableFile(atPath: $0) }

    @Test("headless Chromium renders /status with its four traffic graphs, says nothing on its console, and fetches nothing but the page")
    func screenshot() async throws {
        let browser = try #require(Self.chromium, "chromium is not installed (scripts/install-deps.sh installs it)")
        let dir = try ToolRun.scratchDirectory("status-shot")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let now = Date()
        // Projects in each state: synced, failed after a good sync, stale, never.
        let state = dir + "/state"
        try FileManager.default.createDirectory(atPath: state, withIntermediateDirectories: true)
        let history = try SyncHistory.open(stateDirectory: state)
        var alma = ProjectSync.Report(project: "almalinux", upstream: "rsync://rsync.repo.almalinux.org/", started: now - 900, finished: now - 780, succeeded: true)
        alma.plan = ProjectSync.Plan(files: 812, deletions: 3, bytes: 1_300_000_000, size: 151_000_000_000)
        var arch = ProjectSync.Report(project: "archlinux", upstream: "rsync://mirror.fcix.net/", started: now - 300, finished: now - 290, succeeded: false, failure: "the upstream refused the connection")
        arch.trigger = "interval"
        let good = ProjectSync.Report(project: "archlinux", upstream: "rsync://mirror.fcix.net/", started: now - 7200, finished: now - 7000, succeeded: true)
        let old = ProjectSync.Report(project: "videolan", upstream: "rsync://mirror.fcix.net/", started: now - 200_000, finished: now - 199_000, succeeded: true)
        for report in [good, alma, arch, old] { try history.record(report) }
        for report in [alma, arch, old] { try report.json().write(to: URL(fileURLWithPath: "\(state)/\(report.project).json")) }
        // A month of traffic with a daily rhythm: every 10 minutes for the last day, hourly before.
        let traffic = try TrafficHistory(path: dir + "/traffic.sqlite")
        let moments = stride(from: 30 * 86400, to: 86400, by: -3600).map { TimeInterval($0) } + stride(from: 86400, to: 0, by: -600).map { TimeInterval($0) }
        for ago in moments {
            let at = now - ago
            let share = ago > 86400 ? 1.0 : 600.0 / 3600
            let daily = (1.2 + sin(ago / 86400 * 2 * .pi)) * share
            try traffic.add(
                [
                    TrafficHistory.projectSeries("almalinux"): Int64(daily * 9e9), TrafficHistory.projectSeries("archlinux"): Int64(daily * 4e9),
                    "nic:enp1s0:sent": Int64(daily * 14e9), "nic:enp1s0:received": Int64(daily * 1e9),
                ],
                at: at
            )
        }
        let server = try await LiveServer.start(configure: {
            $0.projects = ["almalinux", "archlinux", "videolan", "ubuntu-releases"]
            $0.syncStateDirectory = state
            $0.trafficHistoryPath = dir + "/traffic.sqlite"
            $0.sponsor = "example-isp.mm.fcix.net"
        }) { _ in }
        defer { Task { await server.stop() } }

        let png = dir + "/status.png"
        let shot = try await ToolRun.run(
            browser,
            [
                "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--enable-logging=stderr", "--v=0", "--window-size=1000,1500",
                "--screenshot=\(png)", server.base + "/status",
            ]
        )
        #expect(shot.status == 0 && FileManager.default.fileExists(atPath: png), "\(shot.combined)")
        let size = (try? FileManager.default.attributesOfItem(atPath: png)[.size] as? Int) ?? 0
        #expect(size > 20_000, "the screenshot is \(size) bytes: a blank page?")
        #expect(!shot.combined.contains("CONSOLE("), "console messages:\n\(shot.combined)")
        // The browser asked the server for the page alone: no script, style sheet, font or image.
        let log = try await server.accessLogText { $0.contains("GET /status ") }
        let requests = log.split(separator: "\n").filter { !$0.contains("GET /status ") && !$0.contains("/favicon.ico") }
        #expect(requests.isEmpty, "the page made the browser fetch more: \(requests)")
        let html = try await run("curl", ["-sS", server.base + "/status"]).output
        #expect(html.components(separatedBy: "<svg").count == 5 && html.contains("stale:"), "four graphs and the stale project")
        if let out = ProcessInfo.processInfo.environment["MM_SCREENSHOT_OUT"] {
            try? FileManager.default.removeItem(atPath: out)
            try FileManager.default.copyItem(atPath: png, toPath: out)
        }
    }
}
