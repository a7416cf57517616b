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
    /// Whether the project's previous run succeeded: only then may an unchanged upstream (the
    /// recipe's freshness files) skip the full sync.
    public var previousSucceeded = false
    /// Where the run takes its lock, `PROJECT.lock` (the sync state directory on mm-data): one run
    /// per project at a time, whether `mm-node run` or `mm-node sync` by hand starts it.
    public var lockDirectory: String?
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

        public init(
            name: String, exitCode: Int32, meaning: String, filesTransferred: Int, filesDeleted: Int, bytesTransferred: Int64, bytesReceived: Int64,
            seconds: Double
        ) {
            self.name = name
            self.exitCode = exitCode
            self.meaning = meaning
            self.filesTransferred = filesTransferred
            self.filesDeleted = filesDeleted
            self.bytesTransferred = bytesTransferred
            self.bytesReceived = bytesReceived
            self.seconds = seconds
        }
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
        /// Why nothing was copied when the run skipped the full sync (the upstream had not changed).
        public var skipped: String?
        public var stages: [StageReport]

        public init(
            project: String, upstream: String, started: Date, finished: Date, succeeded: Bool, failure: String? = nil, skipped: String? = nil,
            stages: [StageReport] = []
        ) {
            self.project = project
            self.upstream = upstream
            self.started = started
            self.finished = finished
            self.succeeded = succeeded
            self.failure = failure
            self.skipped = skipped
            self.stages = stages
        }

        /// The report as kept on disk and printed by `mm-node sync`: pretty, sorted, ISO 8601 dates.
        public func json() throws -> Data {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            encoder.dateEncodingStrategy = .iso8601
            return try encoder.encode(self) + Data("\n".utf8)
        }

        /// A report kept at `path`, or nil when there is none or it cannot be read.
        public static func load(path: String) -> Report? {
            guard let data = FileManager.default.contents(atPath: path) else { return nil }
            let decoder = JSONDecoder()
            decoder.dateDecodingStrategy = .iso8601
            return try? decoder.decode(Report.self, from: data)
        }
    }

    /// Runs every stage; never throws: a failure is in the report.
    public func run() async -> Report {
        let started = Date()
        var report = Report(project: recipe.project, upstream: upstream, started: started, finished: started, succeeded: false, failure: nil, stages: [])
        let destination = root + "/" + recipe.project
        let lock: FileLock?
        do {
            let project = self.recipe.project
            lock = try lockDirectory.map { directory in try Self.lock(project: project, in: directory) }
        } catch {
            report.failure = "\(error)"
            report.finished = Date()
            return report
        }
        defer { withExtendedLifetime(lock) {} }
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
        if previousSucceeded, !recipe.freshness.isEmpty, await Self.unchanged(recipe.freshness, source: source, local: destination, rsync: rsync) {
            logger.info("sync skipped: the upstream has not changed", metadata: ["project": "\(recipe.project)"])
            report.succeeded = true
            report.skipped = "the upstream has not changed (\(recipe.freshness.joined(separator: ", ")))"
            report.finished = Date()
            return report
        }
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
            report.failure = Task.isCancelled ? "the run was stopped (mm-node was asked to end)" : "the run took longer than \(timeout) and was stopped"
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

    /// Takes `directory/PROJECT.lock`; throws, naming the holder, when another run has it.
    static func lock(project: String, in directory: String) throws -> FileLock {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let path = directory + "/" + project + ".lock"
        guard let lock = try FileLock.tryAcquire(path) else {
            throw SyncError("another sync of \(project) is running (\(FileLock.holding(path))); this run did not start")
        }
        return lock
    }

    /// Whether every freshness file (or directory) upstream is byte for byte what we have. Fetched
    /// into a scratch directory with `--times`; any doubt (a fetch fails, a file is missing) means
    /// changed, so the full sync runs.
    static func unchanged(_ paths: [String], source: String, local: String, rsync: String) async -> Bool {
        let scratch = NSTemporaryDirectory() + "mm-freshness-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        for (index, path) in paths.enumerated() {
            let target = scratch + "/\(index)"
            let isDirectory = path.hasSuffix("/")
            let arguments = ["--no-motd", "--timeout=60", "--contimeout=60", "--times", "--links"] + (isDirectory ? ["--recursive"] : [])
                + [source + path, isDirectory ? target + "/" : target]
            try? FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
            let fetched = try? await Subprocess.run(
                .path(FilePath(rsync)), arguments: Arguments(arguments), input: .none, output: .discarded, error: .discarded
            )
            guard case .exited(0) = fetched?.terminationStatus else { return false }
            guard sameContents(target, local + "/" + path) else { return false }
        }
        return true
    }

    /// Two files with the same bytes, or two directories holding the same files with the same bytes.
    static func sameContents(_ a: String, _ b: String) -> Bool {
        let fm = FileManager.default
        var aIsDirectory: ObjCBool = false, bIsDirectory: ObjCBool = false
        guard fm.fileExists(atPath: a, isDirectory: &aIsDirectory), fm.fileExists(atPath: b, isDirectory: &bIsDirectory),
            aIsDirectory.boolValue == bIsDirectory.boolValue
        else { return false }
        guard aIsDirectory.boolValue else { return fm.contentsEqual(atPath: a, andPath: b) }
        guard let names = try? fm.contentsOfDirectory(atPath: a).sorted(),
            let others = try? fm.contentsOfDirectory(atPath: b).filter({ $0 != ".~tmp~" }).sorted(), names == others
        else { return false }
        return names.allSatisfy { sameContents(a + "/" + $0, b + "/" + $0) }
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
