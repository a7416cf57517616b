import Foundation
import Logging
import MicromirrorKit
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
    /// Why this run starts. A push is the upstream saying it changed: it never skips the full
    /// sync, even when the freshness files look the same (the upstream may write them last).
    public var trigger: SyncSchedule<ContinuousClock.Instant>.Trigger = .manual
    /// Where the run takes its lock, `PROJECT.lock` (the sync state directory on mm-data): one run
    /// per project at a time, whether `mm-node run` or `mm-node sync` by hand starts it.
    public var lockDirectory: String?
    /// Lets this one run through the deletion guard (`mm-node sync --allow-deletions`): the NOC has
    /// looked, and the upstream really dropped that much.
    public var allowDeletions = false
    /// Bytes kept free on the mirror's filesystem beyond what a run copies (state, logs, the
    /// updater's downloads, the other projects' next runs). Nil: `defaultReserve` of the filesystem.
    public var reserve: Int64?
    /// The reserve when none is given: 1 GiB, but no more than 5 % of a small filesystem (a test
    /// node's few hundred MiB would otherwise refuse everything).
    public static func defaultReserve(filesystemSize: Int64) -> Int64 { min(1 << 30, filesystemSize / 20) }

    /// The reserve this run keeps on the filesystem holding `destination`.
    func reserve(at destination: String) -> Int64 {
        reserve ?? Self.defaultReserve(filesystemSize: (try? DiskSpace.total(at: destination)) ?? (1 << 40))
    }
    /// The node's name for its own trace file: after each success of a recipe whose freshness is
    /// ftpsync's `project/trace/`, the run writes `project/trace/NAME` as ftpsync does, so mirrors
    /// downstream and the archive's checkers see when this node last synced (and it is kept out of
    /// the sync and its deletions). Nil writes none.
    public var traceName: String?
    /// A seam for tests: runs between the dry run and the first stage (where an upstream that
    /// changes under a run would change).
    public var betweenPlanAndRun: (@Sendable () async -> Void)?
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
        /// Symlinks `--safe-links` left out (absolute, or pointing out of the tree); nil in reports
        /// kept by older versions.
        public var unsafeLinks: Int?

        public init(
            name: String, exitCode: Int32, meaning: String, filesTransferred: Int, filesDeleted: Int, bytesTransferred: Int64, bytesReceived: Int64,
            seconds: Double, unsafeLinks: Int? = nil
        ) {
            self.unsafeLinks = unsafeLinks
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

    /// What the dry run before a run found: what the run would do to the tree.
    public struct Plan: Sendable, Equatable, Codable {
        /// Entries (files, directories, links) in the tree now.
        public var files: Int
        /// Entries the run would delete.
        public var deletions: Int
        /// Bytes the run would copy (new and changed files, whole).
        public var bytes: Int64
        /// The size of the project as the upstream lists it (every file the recipe keeps); nil in
        /// reports kept by older versions.
        public var size: Int64?

        public init(files: Int, deletions: Int, bytes: Int64, size: Int64? = nil) {
            self.size = size
            self.files = files
            self.deletions = deletions
            self.bytes = bytes
        }
    }

    /// Why a run was refused before it changed anything.
    public enum Refusal: String, Sendable, Equatable, Codable {
        /// It would have deleted more than the recipe's `max-delete`.
        case deletionGuard = "deletion-guard"
        /// What it would copy does not fit on the disk with the reserve.
        case diskBudget = "disk-budget"
        /// Another run of the project held its lock; this one did not start.
        case busy
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
        /// Set when the run was refused before it changed anything (`failure` says why in words).
        public var refused: Refusal?
        /// Why the run started: `start-up`, `interval`, `push`, `retry` or `manual` (nil in reports
        /// kept by older versions).
        public var trigger: String?
        /// The upstream's own word on its state after the run (`SyncHistory.freshness`).
        public var freshness: String?
        /// What the dry run found, when one ran.
        public var plan: Plan?
        /// The run's log (`SyncRunLog`), a file name in `STATE/logs/PROJECT/`, when one was kept.
        public var log: String?
        /// Why the recipe's post hook failed, when it did (the run's result stands).
        public var postHookFailure: String?
        public var stages: [StageReport]

        public init(
            project: String, upstream: String, started: Date, finished: Date, succeeded: Bool, failure: String? = nil, skipped: String? = nil,
            refused: Refusal? = nil, plan: Plan? = nil, stages: [StageReport] = []
        ) {
            self.refused = refused
            self.plan = plan
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
        report.trigger = trigger.rawValue
        let destination = root + "/" + recipe.project
        let lock: FileLock?
        do {
            let project = self.recipe.project
            lock = try lockDirectory.map { directory in try Self.lock(project: project, in: directory) }
        } catch {
            report.failure = "\(error)"
            report.refused = .busy
            report.finished = Date()
            return report
        }
        defer { withExtendedLifetime(lock) {} }
        let recorder = SyncRunRecorder(project: recipe.project, started: started, stages: recipe.stages.count, stateDirectory: lockDirectory)
        report.log = recorder.log?.name
        recorder.log?.note("sync of \(recipe.project) from \(RsyncInvocation.source(upstream: upstream, module: recipe.module)), trigger \(trigger.rawValue)")
        var finished = await runLocked(report: report, destination: destination, recorder: recorder)
        if let hook = recipe.postHook {
            var environment = hookEnvironment(destination: destination, log: recorder.log)
            environment["MM_RESULT"] = finished.skipped != nil ? "skipped" : StatusPage.state(finished)
            environment["MM_FAILURE"] = finished.failure ?? ""
            environment["MM_BYTES"] = "\(finished.stages.reduce(Int64(0)) { $0 + $1.bytesReceived })"
            environment["MM_FILES"] = "\(finished.stages.reduce(0) { $0 + $1.filesTransferred })"
            if let why = await hook.run(environment: environment, log: recorder.log) {
                logger.warning("the post hook failed", metadata: ["project": "\(recipe.project)", "why": "\(why)"])
                finished.postHookFailure = why
            }
        }
        recorder.finish(finished)
        return finished
    }

    /// What a hook gets to know of the run (see `SyncHook`).
    func hookEnvironment(destination: String, log: SyncRunLog?) -> [String: String] {
        [
            "MM_PROJECT": recipe.project, "MM_PATH": destination, "MM_UPSTREAM": RsyncInvocation.source(upstream: upstream, module: recipe.module),
            "MM_TRIGGER": trigger.rawValue, "MM_LOG": log?.path ?? "",
        ]
    }

    /// The run once it holds the project's lock.
    private func runLocked(report: Report, destination: String, recorder: SyncRunRecorder) async -> Report {
        var report = report
        let started = report.started
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
        if let hook = recipe.preHook, let why = await hook.run(environment: hookEnvironment(destination: destination, log: recorder.log), log: recorder.log) {
            report.failure = "the pre hook failed, so the run did not start (nothing was changed): \(why)"
            report.finished = Date()
            return report
        }
        if previousSucceeded, trigger != .push, !recipe.freshness.isEmpty,
            await Self.unchanged(recipe.freshness, source: source, local: destination, rsync: rsync, ignoring: ownTrace.map { ($0 as NSString).lastPathComponent })
        {
            logger.info("sync skipped: the upstream has not changed", metadata: ["project": "\(recipe.project)"])
            report.succeeded = true
            report.skipped = "the upstream has not changed (\(recipe.freshness.joined(separator: ", ")))"
            report.freshness = SyncHistory.freshness(recipe.freshness, in: destination, ignoring: traceName)
            report.finished = Date()
            return report
        }
        let logger = self.logger
        let sync = self
        let outcome: Outcome? = await withTaskGroup(of: Outcome?.self) { group in
            group.addTask { await sync.planAndRun(rsync: rsync, source: source, destination: destination, recorder: recorder, logger: logger) }
            group.addTask { [timeout] in
                try? await Task.sleep(for: timeout)
                return nil
            }
            group.addTask {
                await recorder.keepSaving()
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first
        }
        report.finished = Date()
        guard let outcome else {
            report.stages = recorder.stopped()
            if Task.isCancelled {
                // Kept for the next run to resume from, even when space is short: mm-node is ending.
                report.failure = "the run was stopped (mm-node was asked to end)"
            } else {
                report.failure = "the run took longer than \(timeout) and was stopped"
                if let freed = freeLeftoversIfShort(destination) {
                    report.failure! += "; space was short, so its unfinished files (.~tmp~, \(ByteSize.format(freed))) were removed"
                }
            }
            return report
        }
        switch outcome {
        case .planFailed(let stage):
            report.stages = [stage]
            report.failure = "the dry run before the sync: \(stage.meaning)"
        case .refused(let refusal, let plan, let why):
            report.refused = refusal
            report.plan = plan
            report.failure = why
            logger.error("sync refused", metadata: ["project": "\(recipe.project)", "refused": "\(refusal.rawValue)", "why": "\(why)"])
        case .ran(let plan, let stageReports):
            report.plan = plan
            report.stages = stageReports
            if let failed = stageReports.first(where: { !RsyncResult(exitCode: $0.exitCode).succeeded }) {
                report.failure = "stage \(failed.name): \(failed.meaning)"
                if let freed = freeLeftoversIfShort(destination) {
                    report.failure! += "; space was short, so its unfinished files (.~tmp~, \(ByteSize.format(freed))) were removed"
                }
            } else {
                report.succeeded = true
                writeTrace(destination: destination, started: started, upstream: upstream)
            }
        }
        report.freshness = SyncHistory.freshness(recipe.freshness, in: destination, ignoring: traceName)
        return report
    }

    enum Outcome: Sendable {
        case planFailed(StageReport)
        case refused(Refusal, Plan, String)
        case ran(Plan, [StageReport])
    }

    /// The trace file this node writes, relative to the project (nil when it writes none).
    var ownTrace: String? {
        guard let traceName, recipe.freshness.contains("project/trace/"), !traceName.isEmpty, !traceName.contains("/") else { return nil }
        return "project/trace/" + traceName
    }

    /// The recipe as run: the node's own trace file left out of every pass.
    var effectiveRecipe: SyncRecipe {
        var recipe = self.recipe
        if let ownTrace { recipe.exclude.append("/" + ownTrace) }
        return recipe
    }

    /// The dry run, the deletion guard and the disk budget, then the stages in order.
    func planAndRun(rsync: String, source: String, destination: String, recorder: SyncRunRecorder, logger: Logger) async -> Outcome {
        let project = recipe.project
        let recipe = effectiveRecipe
        // An upstream that is itself being updated (ftpsync's marker at the top of the archive) is
        // left alone: the run fails in words, and the retry comes after the backoff.
        if let marker = await Self.updateInProgress(rsync: rsync, source: source) {
            return .planFailed(StageReport(
                name: "plan", exitCode: 1, meaning: "the upstream is updating itself (\(marker) at its top); waiting for it to finish, the run is retried later",
                filesTransferred: 0, filesDeleted: 0, bytesTransferred: 0, bytesReceived: 0, seconds: 0
            ))
        }
        let (planned, stats) = await Self.execute(
            rsync, RsyncInvocation.plan(recipe: recipe, source: source, destination: destination), stage: "plan", number: 0, recorder: recorder
        )
        guard stats.succeeded else { return .planFailed(planned) }
        let plan = Plan(
            files: max(0, stats.files - stats.filesCreated + stats.filesDeleted), deletions: stats.filesDeleted, bytes: stats.bytesTransferred,
            size: stats.totalFileSize
        )
        recorder.planned(bytes: plan.bytes)
        logger.info("sync plan", metadata: ["project": "\(project)", "files": "\(plan.files)", "deletions": "\(plan.deletions)", "bytes": "\(plan.bytes)"])
        let limit = recipe.maxDelete.limit(files: plan.files)
        if plan.deletions > limit {
            let share = plan.files > 0 ? " (\(SyncRecipe.DeleteLimit.percent(Double(plan.deletions) / Double(plan.files))) %)" : ""
            if allowDeletions {
                logger.warning("the deletion guard is overridden for this run", metadata: ["project": "\(project)", "deletions": "\(plan.deletions)"])
            } else {
                return .refused(
                    .deletionGuard, plan,
                    "refused by the deletion guard: the upstream would have this run delete \(plan.deletions) of the \(plan.files) files\(share), more than max-delete allows (\(recipe.maxDelete)). "
                        + "Nothing was changed. Is the upstream empty or cut short? If it really dropped them, let one run through: mm-node sync --allow-deletions \(project)"
                )
            }
        }
        if let short = budgetProblem(plan: plan, destination: destination) {
            return .refused(.diskBudget, plan, short)
        }
        await betweenPlanAndRun?()
        var done: [StageReport] = []
        for (number, stage) in zip(1..., recipe.stages) {
            let arguments = RsyncInvocation.arguments(
                recipe: recipe, stage: stage, source: source, destination: destination, maxDelete: allowDeletions ? max(limit, plan.deletions + 1000) : limit
            )
            logger.info("sync stage", metadata: ["project": "\(project)", "stage": "\(stage.name)", "source": "\(source)"])
            let (stageReport, _) = await Self.execute(rsync, arguments, stage: stage.name, number: number, recorder: recorder)
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
        return .ran(plan, done)
    }

    /// The name of an `Archive-Update-in-Progress-*` file at the top of the upstream's module, or nil
    /// (also when the listing fails: the dry run then says why in its own words).
    static func updateInProgress(rsync: String, source: String) async -> String? {
        let listed = try? await Subprocess.run(
            .path(FilePath(rsync)), arguments: Arguments(["--list-only", "--no-motd", "--timeout=60", "--contimeout=60", source]), input: .none,
            output: .string(limit: 4 << 20), error: .discarded
        )
        guard let listed, case .exited(0) = listed.terminationStatus else { return nil }
        for line in listed.standardOutput.split(separator: "\n") {
            if let name = line.split(separator: " ").last, name.hasPrefix("Archive-Update-in-Progress-") { return String(name) }
        }
        return nil
    }

    /// Writes `project/trace/NAME` in ftpsync's format after a success.
    func writeTrace(destination: String, started: Date, upstream: String) {
        guard let ownTrace else { return }
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss Z"
        let now = Date()
        let host = URL(string: upstream)?.host ?? upstream
        let text = """
            \(formatter.string(from: now))
            Date: \(formatter.string(from: now))
            Date-Started: \(formatter.string(from: started))
            Archive serial: \(SyncHistory.freshness(recipe.freshness, in: destination, ignoring: traceName) ?? "unknown")
            Creator: micromirror mm-node
            Running on host: \(traceName ?? "")
            Maintainer: the FCIX NOC
            Upstream-mirror: \(host)
            Trigger: \(trigger.rawValue)

            """
        do {
            try FileManager.default.createDirectory(atPath: destination + "/project/trace", withIntermediateDirectories: true)
            try AtomicFile.write(Array(text.utf8), to: destination + "/" + ownTrace)
        } catch {
            logger.warning("cannot write the node's trace file", metadata: ["project": "\(recipe.project)", "error": "\(error)"])
        }
    }

    /// Why the run does not fit on the disk, or nil when it does. With `--delay-updates` every file
    /// it copies is whole in `.~tmp~` before the old one goes, so it needs all of `plan.bytes` at
    /// once, plus the reserve. Unfinished files of an earlier run are removed first when that
    /// makes the difference.
    func budgetProblem(plan: Plan, destination: String) -> String? {
        guard var free = try? DiskSpace.available(at: destination) else { return nil }
        let reserve = reserve(at: destination)
        if plan.bytes + reserve > free, let freed = Self.removeLeftovers(destination), freed > 0 {
            logger.warning("space is short: removed an earlier run's unfinished files", metadata: ["project": "\(recipe.project)", "bytes": "\(freed)"])
            free = (try? DiskSpace.available(at: destination)) ?? free
        }
        guard plan.bytes + reserve > free else { return nil }
        return "refused by the disk budget: this run would copy \(ByteSize.format(plan.bytes)) and \(ByteSize.format(reserve)) stay in reserve, "
            + "but \(destination) has \(ByteSize.format(free)) free. Nothing was changed. Free space on mm-data or carry fewer projects."
    }

    /// After a failed run: when less than the reserve is free, its unfinished files go (they would
    /// let the next run resume, but a full mm-data stops the node's state, logs and updates).
    /// Returns the bytes freed, or nil when space was not short.
    func freeLeftoversIfShort(_ destination: String) -> Int64? {
        guard let free = try? DiskSpace.available(at: destination), free < reserve(at: destination) else { return nil }
        let freed = Self.removeLeftovers(destination) ?? 0
        logger.warning("space is short after a failed run: removed its unfinished files", metadata: ["project": "\(recipe.project)", "bytes": "\(freed)"])
        return freed
    }

    /// Removes every `.~tmp~` directory under `tree` (rsync's `--delay-updates` work areas, never
    /// served); returns the bytes they held, or nil when there was none.
    static func removeLeftovers(_ tree: String) -> Int64? {
        let fm = FileManager.default
        guard let walk = fm.enumerator(at: URL(fileURLWithPath: tree), includingPropertiesForKeys: [.isDirectoryKey, .isSymbolicLinkKey], options: []) else { return nil }
        var found: [URL] = []
        for case let url as URL in walk where url.lastPathComponent == ".~tmp~" {
            walk.skipDescendants()
            if (try? url.resourceValues(forKeys: [.isDirectoryKey, .isSymbolicLinkKey])).map({ $0.isDirectory == true && $0.isSymbolicLink != true }) == true {
                found.append(url)
            }
        }
        guard !found.isEmpty else { return nil }
        var bytes: Int64 = 0
        for directory in found {
            if let inside = fm.enumerator(at: directory, includingPropertiesForKeys: [.fileAllocatedSizeKey]) {
                for case let file as URL in inside { bytes += Int64((try? file.resourceValues(forKeys: [.fileAllocatedSizeKey]))?.fileAllocatedSize ?? 0) }
            }
            try? fm.removeItem(at: directory)
        }
        return bytes
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
    static func unchanged(_ paths: [String], source: String, local: String, rsync: String, ignoring: String? = nil) async -> Bool {
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
            guard sameContents(target, local + "/" + path, ignoring: ignoring) else { return false }
        }
        return true
    }

    /// Two files with the same bytes, or two directories holding the same files with the same bytes
    /// (`ignoring`: a name only the local side has, the node's own trace file).
    static func sameContents(_ a: String, _ b: String, ignoring: String? = nil) -> Bool {
        let fm = FileManager.default
        var aIsDirectory: ObjCBool = false, bIsDirectory: ObjCBool = false
        guard fm.fileExists(atPath: a, isDirectory: &aIsDirectory), fm.fileExists(atPath: b, isDirectory: &bIsDirectory),
            aIsDirectory.boolValue == bIsDirectory.boolValue
        else { return false }
        guard aIsDirectory.boolValue else { return fm.contentsEqual(atPath: a, andPath: b) }
        guard let names = try? fm.contentsOfDirectory(atPath: a).sorted(),
            let others = try? fm.contentsOfDirectory(atPath: b).filter({ $0 != ".~tmp~" && $0 != ignoring }).sorted(), names == others
        else { return false }
        return names.allSatisfy { sameContents(a + "/" + $0, b + "/" + $0) }
    }

    /// Runs rsync once, reading what it says as it says it (`recorder`: the log, the progress);
    /// its exit status and figures become the stage's report.
    static func execute(_ rsync: String, _ arguments: [String], stage: String, number: Int, recorder: SyncRunRecorder) async -> (StageReport, RsyncResult) {
        let clock = ContinuousClock()
        let start = clock.now
        var options = PlatformOptions()
        // A stopped run: give rsync a moment to clean up, then kill it.
        options.teardownSequence = [.send(signal: .terminate, allowedDurationToNextStep: .seconds(5))]
        let arguments = ["--info=" + RsyncOutput.info, "--out-format=" + RsyncOutput.format] + arguments
        recorder.begin(stage: stage, number: number, arguments: arguments)
        var exitCode: Int32 = -1
        var errorLines: [String] = []
        do {
            let outcome = try await Subprocess.run(
                .path(FilePath(rsync)), arguments: Arguments(arguments), platformOptions: options, input: .none, output: .sequence, error: .sequence
            ) { execution in
                // Both streams at once: rsync blocks on a full pipe either way.
                async let said: Void = {
                    do { for try await line in execution.standardOutput.strings() { recorder.read(line[...]) } } catch {}
                }()
                var complaints: [String] = []
                do {
                    for try await line in execution.standardError.strings() {
                        recorder.read(line[...])
                        if complaints.count < 200 { complaints.append(line) }
                    }
                } catch {}
                await said
                return complaints
            }
            switch outcome.terminationStatus {
            case .exited(let code): exitCode = code
            case .signaled: exitCode = 20
            }
            errorLines = outcome.closureResult
        } catch {
            errorLines = ["\(error)"]
        }
        let output = recorder.end()
        var result = output.result
        result.exitCode = exitCode
        let elapsed = clock.now - start
        var meaning = result.meaning
        // The daemon's own words (`@ERROR: Unknown module`) or rsync's first complaint say more
        // than its closing "rsync error: ... (code 5)" line.
        let lines = errorLines.filter { !$0.isEmpty && !$0.hasPrefix("ignoring unsafe symlink") }
        if !result.succeeded, let said = lines.first(where: { $0.hasPrefix("@ERROR") }) ?? lines.first(where: { $0.hasPrefix("rsync: ") }) ?? lines.last {
            meaning += " — rsync said: \(said)"
        }
        recorder.log?.note("\(stage): exit \(exitCode) (\(result.meaning)), \(result.filesTransferred) files, \(result.bytesTransferred) bytes, \(result.filesDeleted) deleted")
        let report = StageReport(
            name: stage, exitCode: result.exitCode, meaning: meaning, filesTransferred: result.filesTransferred, filesDeleted: result.filesDeleted,
            bytesTransferred: result.bytesTransferred, bytesReceived: result.bytesReceived,
            seconds: Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18, unsafeLinks: output.unsafeLinks
        )
        recorder.ended(report)
        return (report, result)
    }
}
