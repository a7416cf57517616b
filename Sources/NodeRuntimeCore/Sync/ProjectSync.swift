import Foundation
import Logging
import Subprocess
import SystemKit
import SystemPackage

/// One run of one project: its stages in order, each an rsync from the upstream into
/// `root/PROJECT`. It stops at the first stage that fails, so a later stage (the indexes, the
/// deletions) never runs on top of a failed one, and the whole run is bounded by a timeout after
/// which rsync is stopped (SIGTERM, then SIGKILL): what it had not yet renamed into place stays in
/// `.~tmp~`, which is never served.
public struct ProjectSync: Sendable {
    public var recipe: SyncRecipe
    /// `rsync://host[:port]/`.
    public var upstream: String
    /// The mirror root; the project is `root/PROJECT`.
    public var root: String
    /// The whole run, all stages.
    public var timeout: Duration = .seconds(6 * 3600)
    public var logger: Logger

    public init(recipe: SyncRecipe, upstream: String, root: String, logger: Logger) {
        self.recipe = recipe
        self.upstream = upstream
        self.root = root
        self.logger = logger
    }

    /// What one stage did.
    public struct StageReport: Sendable, Equatable, Codable {
        public var name: String
        public var exitCode: Int32
        public var meaning: String
        public var filesTransferred: Int
        public var filesDeleted: Int
        public var bytesTransferred: Int64
        public var bytesReceived: Int64
        public var seconds: Double
    }

    /// What a run did, kept as the project's last sync state.
    public struct Report: Sendable, Equatable, Codable {
        public var project: String
        public var upstream: String
        public var started: Date
        public var finished: Date
        public var succeeded: Bool
        /// Why the run failed, in words; nil on success.
        public var failure: String?
        public var stages: [StageReport]
    }

    /// Runs every stage; never throws: a failure is in the report.
    public func run() async -> Report {
        let started = Date()
        var report = Report(project: recipe.project, upstream: upstream, started: started, finished: started, succeeded: false, failure: nil, stages: [])
        let destination = root + "/" + recipe.project
        do {
            try FileManager.default.createDirectory(atPath: destination, withIntermediateDirectories: true)
        } catch {
            report.failure = "cannot create \(destination): \(error.localizedDescription)"
            report.finished = Date()
            return report
        }
        guard let rsync = Tool("rsync", package: "rsync").locate() else {
            report.failure = "rsync is not installed (apt-get install rsync)"
            report.finished = Date()
            return report
        }
        let source = RsyncInvocation.source(upstream: upstream, module: recipe.module)
        let stages = recipe.stages
        let logger = self.logger
        let project = recipe.project
        let recipe = self.recipe
        let outcome: [StageReport]? = await withTaskGroup(of: [StageReport]?.self) { group in
            group.addTask {
                var done: [StageReport] = []
                for stage in stages {
                    let arguments = RsyncInvocation.arguments(recipe: recipe, stage: stage, source: source, destination: destination)
                    logger.info("sync stage", metadata: ["project": "\(project)", "stage": "\(stage.name)", "source": "\(source)"])
                    let stageReport = await Self.runRsync(rsync, arguments, stage: stage.name)
                    done.append(stageReport)
                    logger.info(
                        "sync stage done",
                        metadata: [
                            "project": "\(project)", "stage": "\(stage.name)", "exit": "\(stageReport.exitCode)", "files": "\(stageReport.filesTransferred)",
                            "deleted": "\(stageReport.filesDeleted)", "bytes": "\(stageReport.bytesReceived)", "seconds": "\(stageReport.seconds)",
                        ]
                    )
                    if !RsyncResult(exitCode: stageReport.exitCode).succeeded { break }
                }
                return done
            }
            group.addTask { [timeout] in
                try? await Task.sleep(for: timeout)
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first
        }
        report.finished = Date()
        guard let stageReports = outcome else {
            report.failure = "the run took longer than \(timeout) and was stopped"
            return report
        }
        report.stages = stageReports
        if let failed = stageReports.first(where: { !RsyncResult(exitCode: $0.exitCode).succeeded }) {
            report.failure = "stage \(failed.name): \(failed.meaning)"
        } else {
            report.succeeded = true
        }
        return report
    }

    /// Runs rsync once; its exit status and `--stats` become the stage's report.
    static func runRsync(_ rsync: String, _ arguments: [String], stage: String) async -> StageReport {
        let clock = ContinuousClock()
        let start = clock.now
        var options = PlatformOptions()
        // A stopped run: give rsync a moment to clean up, then kill it.
        options.teardownSequence = [.send(signal: .terminate, allowedDurationToNextStep: .seconds(5))]
        var result = RsyncResult(exitCode: -1)
        var errorText = ""
        do {
            let outcome = try await Subprocess.run(
                .path(FilePath(rsync)), arguments: Arguments(arguments), platformOptions: options, input: .none, output: .string(limit: 1 << 20),
                error: .string(limit: 1 << 20)
            )
            switch outcome.terminationStatus {
            case .exited(let code): result.exitCode = code
            case .signaled: result.exitCode = 20
            }
            result.readStats(outcome.standardOutput)
            errorText = outcome.standardError
        } catch {
            errorText = "\(error)"
        }
        let elapsed = clock.now - start
        var meaning = result.meaning
        // The daemon's own words (`@ERROR: Unknown module`) or rsync's first complaint say more
        // than its closing "rsync error: ... (code 5)" line.
        let lines = errorText.split(separator: "\n").filter { !$0.isEmpty }
        if !result.succeeded, let said = lines.first(where: { $0.hasPrefix("@ERROR") }) ?? lines.first(where: { $0.hasPrefix("rsync: ") }) ?? lines.last {
            meaning += " — rsync said: \(said)"
        }
        return StageReport(
            name: stage, exitCode: result.exitCode, meaning: meaning, filesTransferred: result.filesTransferred, filesDeleted: result.filesDeleted,
            bytesTransferred: result.bytesTransferred, bytesReceived: result.bytesReceived,
            seconds: Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        )
    }
}
