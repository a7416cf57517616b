import Foundation
import NIOCore
import NIOPosix

/// An answer that blocks to make (reads directories or files), made on the thread pool.
enum DeferredAnswer: Sendable {
    /// A directory's listing; of a cache-mode project's cache when `cacheProject` is set.
    case listing(relative: String, shown: String, json: Bool, cacheProject: String?)
    case status(json: Bool)
    /// `/jobs` (tunasync's shape) and `/mirrorz.json` (MirrorZ's), for dashboards built on them.
    case jobs
    case mirrorz(siteURL: String)
    /// `/metrics`: the counters, the update's state read from its file, the machine and the projects' sync state.
    case metrics
    /// `/status/logs/PROJECT/NAME`: a sync run's log (the path checked by the responder).
    case syncLog(path: String)

    /// The body, its type and its `Cache-Control`; blocking.
    func make(_ shared: ServeContext) throws -> (body: String, contentType: String, cache: String) {
        let configuration = shared.configuration
        switch self {
        case .listing(let relative, let shown, let json, let cacheProject):
            let resolver = cacheProject.flatMap { shared.caches[$0]?.resolver } ?? shared.resolver
            var entries = try DirectoryListing.entries(of: relative, resolver: resolver)
            if cacheProject == nil, relative == "." {
                // The projects in cache mode live elsewhere (the cache root) and belong in the root's listing too.
                let known = Set(entries.map(\.name))
                for (name, cache) in shared.caches where !known.contains(name) {
                    var info = stat()
                    let mtime = stat(cache.directory, &info) == 0 ? Int(info.st_mtim.tv_sec) : 0
                    entries.append(DirectoryListing.Entry(name: name, type: "directory", size: 0, mtime: mtime))
                }
                entries.sort { ($0.type == "directory" ? 0 : 1, $0.name) < ($1.type == "directory" ? 0 : 1, $1.name) }
            }
            return json
                ? (DirectoryListing.json(path: shown, entries: entries), "application/json", "max-age=60, must-revalidate")
                : (DirectoryListing.html(path: shown, entries: entries, sponsor: configuration.sponsor), "text/html; charset=utf-8", "max-age=60, must-revalidate")
        case .syncLog(let path):
            guard let data = FileManager.default.contents(atPath: path) else { throw ServeError("cannot read the sync log \(path)") }
            return (String(decoding: data, as: UTF8.self), "text/plain; charset=utf-8", "no-store")
        case .metrics:
            shared.metrics.update.record(updateState(configuration))
            shared.metrics.host.record(
                network: NetworkCounters.read(), dataPath: configuration.root, temperature: CPUTemperature.celsius(),
                projects: projects(shared)
            )
            return (shared.metrics.prometheusText(), "text/plain; version=0.0.4", "no-store")
        case .status(let json):
            let projects = projects(shared)
            let update = updateState(configuration)
            let traffic = configuration.trafficHistoryPath.flatMap { TrafficPanels.load(path: $0) }
            return json
                ? (StatusPage.json(node: configuration.sponsor, projects: projects, update: update, traffic: traffic), "application/json", "no-store")
                : (StatusPage.html(node: configuration.sponsor, projects: projects, update: update, traffic: traffic), "text/html; charset=utf-8", "no-store")
        case .jobs:
            let projects = projects(shared)
            return (StatusPage.tunasyncJobs(projects), "application/json", "no-store")
        case .mirrorz(let siteURL):
            let projects = projects(shared)
            return (StatusPage.mirrorz(node: configuration.sponsor, siteURL: siteURL, projects: projects), "application/json", "no-store")
        }
    }

    /// The node's projects as `/status` shows them: mirrored ones from their sync reports, those in
    /// cache mode from their caches (standalone, without a project list: the caches).
    private func projects(_ shared: ServeContext) -> [StatusPage.Project] {
        let configuration = shared.configuration
        let names = configuration.projects.isEmpty ? shared.caches.keys.sorted() : configuration.projects
        let mirrored = StatusPage.projects(names.filter { shared.caches[$0] == nil }, stateDirectory: configuration.syncStateDirectory)
        var byName = Dictionary(uniqueKeysWithValues: mirrored.map { ($0.name, $0) })
        for (name, cache) in shared.caches { byName[name] = StatusPage.project(name, cache: cache.summary()) }
        return names.compactMap { byName[$0] }
    }

    private func updateState(_ configuration: ServeConfiguration) -> UpdateState? {
        configuration.updateStatePath.flatMap { FileManager.default.fileExists(atPath: $0) ? UpdateState.load(path: $0) : nil }
    }
}
