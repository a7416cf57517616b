import Foundation
import Logging
import ServiceLifecycle
import SystemKit

/// Keeps a node's projects in sync: runs `SyncSchedule` on a clock, starts each due project's run,
/// takes pushes from the upstream, and writes every run's report to `stateDirectory/PROJECT.json`
/// and to the history (`stateDirectory/history.sqlite`).
///
/// Generic over the clock so tests can drive time; on a node it is `ContinuousClock`. At shutdown
/// running syncs are stopped: what rsync had not yet renamed into place stays in `.~tmp~`, which is
/// never served, and the next run picks it up.
public final class SyncService<C: Clock>: Service, Sendable where C.Duration == Duration, C.Instant: Sendable {
    /// Runs one project; gets the project's previous report (nil before its first run) and why it runs.
    public typealias Runner = @Sendable (_ project: String, _ previous: ProjectSync.Report?, _ trigger: SyncSchedule<C.Instant>.Trigger) async -> ProjectSync.Report

    private enum Event: Sendable {
        case push(String)
        case finished(String, ProjectSync.Report)
        case tick
    }

    private let projects: [String]
    private let policy: SyncSchedule<C.Instant>.Policy
    private let clock: C
    private let runner: Runner
    private let stateDirectory: String?
    private let metrics: SyncMetrics?
    private let logger: Logger
    private let history: SyncHistory?
    private let events: AsyncStream<Event>
    private let continuation: AsyncStream<Event>.Continuation

    public init(
        projects: [String], policy: SyncSchedule<C.Instant>.Policy, clock: C, stateDirectory: String?, metrics: SyncMetrics? = nil, logger: Logger,
        runner: @escaping Runner
    ) {
        self.metrics = metrics
        self.projects = projects
        self.policy = policy
        self.clock = clock
        self.runner = runner
        self.stateDirectory = stateDirectory
        self.logger = logger
        do {
            history = try stateDirectory.map { try SyncHistory.open(stateDirectory: $0) }
        } catch {
            logger.error("cannot open the sync history; runs are kept as reports only", metadata: ["error": "\(error)"])
            history = nil
        }
        (events, continuation) = AsyncStream.makeStream(of: Event.self)
    }

    /// The upstream says `project` changed (an MQTT push).
    public func push(_ project: String) { continuation.yield(.push(project)) }

    public func run() async throws {
        // What each project's last run did, from the state files of earlier lives too.
        var previous: [String: ProjectSync.Report] = [:]
        for project in projects { previous[project] = loadState(project) }
        var schedule = SyncSchedule(
            projects: projects, policy: policy, now: clock.now, neverSynced: Set(projects.filter { previous[$0] == nil }), previous: lastRuns(previous)
        )
        var running: [String: Task<Void, Never>] = [:]
        var since: [String: Date] = [:]
        var timer: Task<Void, Never>?
        let continuation = self.continuation
        let runner = self.runner
        let clock = self.clock

        await withGracefulShutdownHandler {
            var iterator = events.makeAsyncIterator()
            while !Task.isCancelled {
                for project in schedule.due(now: clock.now) {
                    let trigger = schedule.triggers[project] ?? .interval
                    logger.info("sync starting", metadata: ["project": "\(project)", "trigger": "\(trigger.rawValue)"])
                    let last = previous[project]
                    since[project] = Date()
                    running[project] = Task {
                        let report = await runner(project, last, trigger)
                        continuation.yield(.finished(project, report))
                    }
                }
                publish(schedule, since: since)
                timer?.cancel()
                if let next = schedule.nextDue {
                    timer = Task {
                        try? await clock.sleep(until: next, tolerance: nil)
                        if !Task.isCancelled { continuation.yield(.tick) }
                    }
                }
                guard let event = await iterator.next() else { break }
                switch event {
                case .push(let project):
                    logger.info("sync pushed", metadata: ["project": "\(project)"])
                    schedule.push(project, now: clock.now)
                case .finished(let project, let report):
                    running[project] = nil
                    since[project] = nil
                    previous[project] = report
                    schedule.finished(project, succeeded: report.succeeded, now: clock.now)
                    record(report)
                case .tick:
                    break
                }
            }
        } onGracefulShutdown: {
            continuation.finish()
        }
        timer?.cancel()
        for task in running.values { task.cancel() }
        for task in running.values { await task.value }
    }

    /// Writes what runs now and what runs when (`SyncPlanFile`) for the status pages.
    private func publish(_ schedule: SyncSchedule<C.Instant>, since: [String: Date]) {
        guard let stateDirectory else { return }
        let now = clock.now
        let wall = Date()
        var projects: [String: SyncPlanFile.Project] = [:]
        for project in self.projects {
            let next = schedule.nextRun(project).map { wall.addingTimeInterval(Self.seconds(now.duration(to: $0))) }
            projects[project] = SyncPlanFile.Project(running: since[project], next: next, trigger: schedule.triggers[project]?.rawValue)
        }
        do { try SyncPlanFile(written: wall, projects: projects).save(stateDirectory: stateDirectory) } catch {
            logger.error("cannot write the sync schedule", metadata: ["error": "\(error)"])
        }
    }

    private static func seconds(_ duration: Duration) -> TimeInterval {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }

    /// How each project's last run ended and how long ago (wall clock: the runs were in an earlier
    /// life of the node), so the schedule picks up where it was.
    private func lastRuns(_ reports: [String: ProjectSync.Report]) -> [String: SyncSchedule<C.Instant>.Previous] {
        let now = Date()
        var result: [String: SyncSchedule<C.Instant>.Previous] = [:]
        for (project, report) in reports {
            let ago = Duration.seconds(max(0, now.timeIntervalSince(report.finished)))
            if report.succeeded {
                result[project] = .succeeded(ago: ago)
            } else {
                let failures = (try? history?.failuresSinceSuccess(project: project)) ?? 1
                result[project] = .failed(ago: ago, failures: max(1, failures))
            }
        }
        return result
    }

    /// The report kept by an earlier run, if there is a readable one.
    private func loadState(_ project: String) -> ProjectSync.Report? {
        stateDirectory.flatMap { ProjectSync.Report.load(path: $0 + "/" + project + ".json") }
    }

    /// Logs a finished run and keeps its report as the project's state.
    private func record(_ report: ProjectSync.Report) {
        metrics?.record(report)
        var metadata: Logger.Metadata = [
            "project": "\(report.project)", "seconds": "\(Int(report.finished.timeIntervalSince(report.started)))",
            "files": "\(report.stages.reduce(0) { $0 + $1.filesTransferred })", "deleted": "\(report.stages.reduce(0) { $0 + $1.filesDeleted })",
        ]
        if let skipped = report.skipped {
            metadata["skipped"] = "\(skipped)"
            logger.info("sync not needed", metadata: metadata)
        } else if report.succeeded {
            logger.info("sync done", metadata: metadata)
        } else {
            metadata["why"] = "\(report.failure ?? "?")"
            logger.warning("sync failed", metadata: metadata)
        }
        // A run that found the project busy (a sync by hand) leaves that run's report in place.
        guard let stateDirectory, report.refused != .busy else { return }
        do {
            try FileManager.default.createDirectory(atPath: stateDirectory, withIntermediateDirectories: true)
            try AtomicFile.write(Array(report.json()), to: stateDirectory + "/" + report.project + ".json")
        } catch {
            logger.error("cannot write the sync state", metadata: ["project": "\(report.project)", "error": "\(error)"])
        }
        do {
            try history?.record(report, freshness: report.freshness)
        } catch {
            logger.error("cannot add the run to the sync history", metadata: ["project": "\(report.project)", "error": "\(error)"])
        }
    }
}
