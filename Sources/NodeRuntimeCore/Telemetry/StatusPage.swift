import Foundation
import MicromirrorKit

/// `/status`: each project's last sync, for the mirror admin and the sponsor, in HTML and JSON
/// (`?format=json`), read from the sync service's reports (`STATE/PROJECT.json`).
public enum StatusPage {
    /// One project as the page shows it.
    public struct Project: Sendable, Codable, Equatable {
        public var name: String
        /// `success`, `failed`, `refused-by-guard` (the deletion guard), `refused-by-disk-budget`,
        /// or `never` (no finished run yet).
        public var state: String
        public var lastFinished: Date?
        public var lastStarted: Date?
        public var seconds: Double?
        public var filesTransferred: Int?
        public var bytesReceived: Int64?
        public var failure: String?
        public var skipped: String?
        /// When the project last synced successfully, from the history (it survives failures).
        public var lastSuccess: Date?
        /// No success within the stale threshold (or ever, once a run has finished).
        public var stale: Bool = false
        /// Why the last run started (`start-up`, `interval`, `push`, `retry`, `manual`).
        public var trigger: String?
        /// Since when a sync of it runs, when one does (the sync service's schedule).
        public var syncingSince: Date?
        /// When it syncs next, from the sync service's schedule.
        public var nextRun: Date?
        /// `rsync://…/MODULE/` it syncs from, as the last run said.
        public var upstream: String?
        /// Where the running sync stands (stage, bytes and files so far, rate), while one runs.
        public var progress: SyncProgress?
        /// The last run's log, `/status/logs/PROJECT/NAME`, when one was kept.
        public var log: String?
        /// The project's size as the upstream lists it (the newest dry run's count).
        public var size: Int64?
        /// Symlinks the last run left out because they point out of the tree.
        public var unsafeLinks: Int?
        /// A project in cache mode (state `cache`, or `cache-stale` while its origin fails): what is
        /// cached and how well it serves.
        public var cache: PullThroughCache.Summary?
    }

    /// A project in cache mode as the page shows it.
    public static func project(_ name: String, cache: PullThroughCache.Summary) -> Project {
        var project = Project(name: name, state: cache.originError == nil ? "cache" : "cache-stale")
        project.stale = cache.originError != nil
        project.upstream = cache.origin
        project.size = cache.bytes
        project.cache = cache
        return project
    }

    struct Page: Codable {
        var node: String
        var generated: Date
        var projects: [Project]
        /// The image, its slot and the updater's state, when the node has an updater.
        var update: UpdateState?
        /// Bytes per project and interface over the last day and month, when the node keeps them.
        var traffic: [TrafficPanels.Series]?
    }

    /// How long a project may go without a successful sync before the page calls it stale.
    public static let staleAfter: TimeInterval = 24 * 3600

    /// Reads the reports of `projects` (a missing or unreadable one is `never`) and, from the
    /// history, when each last synced successfully.
    public static func projects(_ names: [String], stateDirectory: String?, now: Date = Date(), staleAfter: TimeInterval = staleAfter) -> [Project] {
        let history = stateDirectory.flatMap { directory in
            FileManager.default.fileExists(atPath: directory + "/" + SyncHistory.fileName) ? try? SyncHistory.open(stateDirectory: directory, readOnly: true) : nil
        }
        let plan = stateDirectory.flatMap { SyncPlanFile.load(stateDirectory: $0) }
        return names.map { name in
            let planned = plan?.projects[name]
            // A run in progress, whether the service or `mm-node sync` by hand started it.
            let progress = stateDirectory.flatMap { SyncProgress.live(project: name, stateDirectory: $0, now: now) }
            let syncing = planned?.running ?? progress?.started
            guard let report = stateDirectory.flatMap({ ProjectSync.Report.load(path: $0 + "/" + name + ".json") }) else {
                var project = Project(name: name, state: syncing != nil ? "syncing" : "never")
                project.syncingSince = syncing
                project.nextRun = planned?.next
                project.progress = progress
                return project
            }
            let lastSuccess = report.succeeded ? report.finished : (try? history?.lastSuccess(project: name)) ?? nil
            var project = Project(
                name: name, state: syncing != nil ? "syncing" : state(report), lastFinished: report.finished, lastStarted: report.started,
                seconds: report.finished.timeIntervalSince(report.started), filesTransferred: report.stages.reduce(0) { $0 + $1.filesTransferred },
                bytesReceived: report.stages.reduce(Int64(0)) { $0 + $1.bytesReceived }, failure: report.failure, skipped: report.skipped,
                lastSuccess: lastSuccess, stale: lastSuccess.map { now.timeIntervalSince($0) > staleAfter } ?? true, trigger: report.trigger,
                syncingSince: syncing, nextRun: planned?.next, upstream: report.upstream + name + "/"
            )
            project.progress = progress
            project.log = report.log.map { logPath(project: name, log: $0) }
            project.size = report.plan?.size ?? ((try? history?.lastSize(project: name)) ?? nil)
            let unsafe = report.stages.reduce(0) { $0 + ($1.unsafeLinks ?? 0) }
            project.unsafeLinks = report.stages.contains { $0.unsafeLinks != nil } ? unsafe : nil
            return project
        }
    }

    /// Where `/status` serves a run's log.
    public static func logPath(project: String, log: String) -> String {
        "/status/logs/" + DirectoryListing.percentEncode(project) + "/" + log
    }

    /// The projects in tunasync's `/jobs` shape (what its web pages and the dashboards built on it
    /// read): name, status (`success`, `failed`, `syncing`, `none`), last update (the last success),
    /// last start and end, next schedule, upstream, size; times as tunasync writes them, in text
    /// and as Unix seconds.
    public static func tunasyncJobs(_ projects: [Project]) -> String {
        func text(_ date: Date?) -> String { date.map { tunasyncTime.string(from: $0) } ?? "0001-01-01 00:00:00 +0000" }
        func stamp(_ date: Date?) -> Int64 { date.map { Int64($0.timeIntervalSince1970) } ?? -62_135_596_800 }
        let jobs = projects.map { project in
            let status: String
            switch project.state {
            case "success": status = "success"
            case "syncing": status = "syncing"
            case "never": status = "none"
            default: status = "failed"
            }
            let started = project.syncingSince ?? project.lastStarted
            return TunasyncJob(
                name: project.name, is_master: true, status: status, last_update: text(project.lastSuccess), last_update_ts: stamp(project.lastSuccess),
                last_started: text(started), last_started_ts: stamp(started), last_ended: text(project.lastFinished),
                last_ended_ts: stamp(project.lastFinished), next_schedule: text(project.nextRun), next_schedule_ts: stamp(project.nextRun),
                upstream: project.upstream ?? "", size: project.size.map { ByteSize.format($0) } ?? "unknown"
            )
        }
        return encode(jobs)
    }

    /// One entry of tunasync's `/jobs`, its field names as tunasync spells them.
    struct TunasyncJob: Encodable {
        var name: String
        var is_master: Bool
        var status: String
        var last_update: String
        var last_update_ts: Int64
        var last_started: String
        var last_started_ts: Int64
        var last_ended: String
        var last_ended_ts: Int64
        var next_schedule: String
        var next_schedule_ts: Int64
        var upstream: String
        var size: String
    }

    /// The node in MirrorZ's `mirrorz.json` shape (data format 1.7): the site, and each project
    /// with its status string (`S<last success>`, `Y<started>`, `F<last attempt>`, `U`, plus
    /// `O<last success>` while syncing or failed and `X<next run>`).
    public static func mirrorz(node: String, siteURL: String, projects: [Project]) -> String {
        func ts(_ date: Date?) -> String { date.map { String(Int64($0.timeIntervalSince1970)) } ?? "" }
        let mirrors = projects.map { project in
            var status: String
            switch project.state {
            case "success": status = "S" + ts(project.lastSuccess)
            case "syncing": status = "Y" + ts(project.syncingSince)
            case "never": status = "U"
            default: status = "F" + ts(project.lastFinished)
            }
            if project.state != "success", project.lastSuccess != nil { status += "O" + ts(project.lastSuccess) }
            if project.nextRun != nil { status += "X" + ts(project.nextRun) }
            return MirrorZ.Mirror(cname: project.name, desc: "", url: "/" + project.name, status: status, help: "", upstream: project.upstream ?? "", size: project.size.map { ByteSize.format($0) } ?? "")
        }
        let url = siteURL.hasSuffix("/") ? String(siteURL.dropLast()) : siteURL
        return encode(MirrorZ(version: 1.7, site: .init(url: url, abbr: node, name: node), info: [], mirrors: mirrors))
    }

    /// `mirrorz.json`, as much of it as a node knows.
    struct MirrorZ: Encodable {
        struct Site: Encodable {
            var url: String
            var abbr: String
            var name: String
        }
        struct Mirror: Encodable {
            var cname: String
            var desc: String
            var url: String
            var status: String
            var help: String
            var upstream: String
            var size: String
        }
        var version: Double
        var site: Site
        var info: [String]
        var mirrors: [Mirror]
    }

    private static func encode<T: Encodable>(_ value: T) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return String(decoding: (try? encoder.encode(value)) ?? Data(), as: UTF8.self) + "\n"
    }

    static let tunasyncTime: DateFormatter = {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyy-MM-dd HH:mm:ss Z"
        return formatter
    }()

    /// A report's state as the page names it.
    public static func state(_ report: ProjectSync.Report) -> String {
        if report.succeeded { return "success" }
        switch report.refused {
        case .deletionGuard: return "refused-by-guard"
        case .diskBudget: return "refused-by-disk-budget"
        case .busy, nil: return "failed"
        }
    }

    public static func json(node: String, projects: [Project], update: UpdateState? = nil, traffic: TrafficPanels? = nil, now: Date = Date()) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .iso8601
        return String(decoding: (try? encoder.encode(Page(node: node, generated: now, projects: projects, update: update, traffic: traffic?.summary()))) ?? Data(), as: UTF8.self) + "\n"
    }

    public static func html(node: String, projects: [Project], update: UpdateState? = nil, traffic: TrafficPanels? = nil, now: Date = Date()) -> String {
        let e = DirectoryListing.escape
        var rows = ""
        for project in projects {
            let result: String
            switch project.state {
            case "success": result = project.skipped != nil ? "up to date (upstream unchanged)" : "ok"
            case "failed": result = "failed: " + e(project.failure ?? "?")
            case "refused-by-guard", "refused-by-disk-budget": result = e(project.failure ?? "refused")
            case "cache", "cache-stale":
                let c = project.cache!
                result = "cache of <a href=\"\(e(c.origin))\">\(e(c.origin))</a>: \(c.files) files, \(ByteSize.format(c.bytes)) of \(ByteSize.format(c.budget))"
                    + (c.hitRatio.map { String(format: ", %.0f %% served from the cache", $0 * 100) } ?? "")
                    + (c.originError.map { "; <span class=\"bad\">origin failing" + (c.originFailingSince.map { " for \(age(now.timeIntervalSince($0)))" } ?? "") + ", serving what is cached (stale): \(e($0))</span>" } ?? "")
            case "syncing": result = "syncing since " + (project.syncingSince.map { "\(age(now.timeIntervalSince($0))) ago" } ?? "?") + (project.progress.map(progressText) ?? "")
            default: result = "not synced yet"
            }
            let finished = project.lastFinished.map { "\(HTTPDate.format(Int($0.timeIntervalSince1970))) (\(age(now.timeIntervalSince($0))) ago)" } ?? "-"
            var good = project.lastSuccess.map { "\(age(now.timeIntervalSince($0))) ago" } ?? (project.state == "never" || project.cache != nil ? "-" : "never")
            if project.stale, project.state != "never", project.cache == nil { good = "<span class=\"bad\">stale: \(good)</span>" }
            let next = project.nextRun.map { $0 > now ? "in \(age($0.timeIntervalSince(now)))" : "now" } ?? "-"
            let data = project.bytesReceived.map { ByteSize.format($0) } ?? "-"
            let files = project.filesTransferred.map(String.init) ?? "-"
            let size = project.size.map { ByteSize.format($0) } ?? "-"
            var notes = project.log.map { " <a href=\"\($0)\">log</a>" } ?? ""
            if let unsafe = project.unsafeLinks, unsafe > 0 { notes += " (\(unsafe) unsafe symlink\(unsafe == 1 ? "" : "s") left out)" }
            rows += "<tr class=\"\(e(project.state))\"><td><a href=\"/\(DirectoryListing.percentEncode(project.name))/\">\(e(project.name))</a></td>"
                + "<td>\(result)\(notes)</td><td>\(finished)</td><td>\(good)</td><td>\(next)</td><td class=\"n\">\(files)</td><td class=\"n\">\(data)</td><td class=\"n\">\(size)</td></tr>\n"
        }
        return """
            <!DOCTYPE html>
            <html><head><meta charset="utf-8"><title>\(e(node)): mirror status</title>
            <style>body{font-family:sans-serif;margin:2em}td,th{padding:.2em 1em;text-align:left}td.n{text-align:right}figure{margin:1em 0}figcaption{font-weight:bold}svg{max-width:100%;height:auto}tr.failed td,tr.refused-by-guard td,tr.refused-by-disk-budget td{color:#a00}.bad{color:#a00}</style></head>
            <body><h1>\(e(node)): mirror status</h1>
            <table>
            <tr><th>Project</th><th>Last sync</th><th>Finished</th><th>Last good sync</th><th>Next</th><th>Files copied</th><th>Received</th><th>Size</th></tr>
            \(rows)</table>
            \(update.map { updateSection($0, now: now) } ?? "")
            \(traffic.map { "<h2>Traffic</h2>\n" + $0.html() } ?? "")
            <p>As JSON: <a href="/status?format=json">/status?format=json</a>; for dashboards: <a href="/jobs">/jobs</a> (tunasync), <a href="/mirrorz.json">/mirrorz.json</a> (MirrorZ). Counters: <a href="/metrics">/metrics</a>.
            Problems with this mirror go to the FCIX NOC, not to the hosting network.</p>
            </body></html>

            """
    }

    /// `: stage 2 of 2 (indexes), 1.2 GiB of 3.4 GiB, 812 files, 24.5 MiB/s`.
    static func progressText(_ progress: SyncProgress) -> String {
        let stage = progress.stageNumber == 0 ? "dry run" : "stage \(progress.stageNumber) of \(progress.stages) (\(DirectoryListing.escape(progress.stage)))"
        let bytes = ByteSize.format(progress.bytes) + (progress.plannedBytes.map { " of " + ByteSize.format($0) } ?? "")
        return ": \(stage), \(bytes), \(progress.files) files, \(ByteSize.format(Int64(progress.rate)))/s"
    }

    /// The image and slot this node runs, and where its update stands.
    static func updateSection(_ state: UpdateState, now: Date) -> String {
        let e = DirectoryListing.escape
        var lines: [String] = []
        if let boot = state.boot {
            let entry = boot.entries.first { $0.hasPrefix("micromirror-\(boot.slot)") }
            let kept = entry.map { $0.contains("+") ? "on trial" : "blessed" } ?? "no boot entry"
            lines.append("Running \(e(boot.version)) (build \(boot.buildNumber)) from slot \(e(boot.slot)), \(kept).")
        }
        var phase = "Update: \(state.phase.rawValue)"
        if let target = state.target { phase += ", build \(target.buildNumber) (\(e(target.version))) for slot \(e(target.slot))" }
        if state.phase == .downloading, state.totalBytes > 0 {
            phase += ", \(ByteSize.format(state.downloadedBytes)) of \(ByteSize.format(state.totalBytes))"
        }
        lines.append(phase + ".")
        if !state.rolledBack.isEmpty {
            lines.append("<span class=\"bad\">Rolled back here, never taken again: build \(state.rolledBack.map(String.init).joined(separator: ", ")).</span>")
        }
        if let error = state.lastError { lines.append("Last error: \(e(error)).") }
        if let event = state.events.last {
            lines.append("Last step (\(age(now.timeIntervalSince1970 - Double(event.time))) ago): \(e(event.message)).")
        }
        return "<h2>System</h2>\n<p>" + lines.joined(separator: "<br>\n") + "</p>"
    }

    /// `45 s`, `12 min`, `3 h`, `2 d`.
    static func age(_ seconds: Double) -> String {
        let s = max(0, Int(seconds))
        if s < 120 { return "\(s) s" }
        if s < 7200 { return "\(s / 60) min" }
        if s < 172_800 { return "\(s / 3600) h" }
        return "\(s / 86400) d"
    }
}
