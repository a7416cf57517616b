import Foundation
import Synchronization

/// Follows one run as rsync talks: reads each line of each stage (`RsyncOutput`), keeps the run's
/// log (`SyncRunLog`) and, every couple of seconds, its progress file (`SyncProgress`) for `/status`.
/// Shared by the tasks reading rsync's output and error and the one writing the progress.
final class SyncRunRecorder: Sendable {
    let log: SyncRunLog?
    private let stateDirectory: String?
    private let project: String
    private let started: Date
    private let stageCount: Int

    private struct State {
        var stage = "plan"
        var stageNumber = 0
        var current = RsyncOutput()
        /// Bytes and files of the stages that ended.
        var bytesDone: Int64 = 0
        var filesDone = 0
        var plannedBytes: Int64?
        /// When the first stage (after the dry run) began: the rate counts from there.
        var copyingSince: Date?
        var stageStarted = Date()
        /// The stages (not the dry run) that ended, as reported.
        var ended: [ProjectSync.StageReport] = []
    }
    private let state = Mutex(State())

    /// `stateDirectory` nil keeps neither log nor progress (the figures are still read).
    init(project: String, started: Date, stages: Int, stateDirectory: String?) {
        self.project = project
        self.started = started
        self.stageCount = stages
        self.stateDirectory = stateDirectory
        log = stateDirectory.flatMap { SyncRunLog(project: project, started: started, stateDirectory: $0) }
    }

    /// A stage (or the dry run, number 0) starts with these rsync arguments.
    func begin(stage: String, number: Int, arguments: [String]) {
        state.withLock { state in
            state.stage = stage
            state.stageNumber = number
            state.current = RsyncOutput()
            state.stageStarted = Date()
            if number > 0, state.copyingSince == nil { state.copyingSince = Date() }
        }
        log?.note("\(stage): rsync " + arguments.joined(separator: " "))
        save()
    }

    /// What the dry run said the run will copy.
    func planned(bytes: Int64) { state.withLock { $0.plannedBytes = bytes } }

    /// One line rsync wrote.
    func read(_ line: Substring) {
        let kind = state.withLock { $0.current.read(line) }
        if kind == .text, !line.isEmpty { log?.write(line) }
    }

    /// The stage ended: what its output said.
    func end() -> RsyncOutput {
        state.withLock { state in
            let output = state.current
            if state.stageNumber > 0 {
                state.bytesDone += output.result.bytesTransferred
                state.filesDone += output.result.filesTransferred
            }
            state.current = RsyncOutput()
            return output
        }
    }

    /// A stage's report, once `execute` made it.
    func ended(_ report: ProjectSync.StageReport) {
        state.withLock { state in if state.stageNumber > 0 { state.ended.append(report) } }
    }

    /// What the run did up to where it was stopped (the timeout, or mm-node ending): the stages
    /// that ended and the one cut short, with what it had received.
    func stopped() -> [ProjectSync.StageReport] {
        state.withLock { state in
            guard state.stageNumber > 0, state.ended.count < state.stageNumber else { return state.ended }
            let output = state.current.result
            return state.ended + [
                ProjectSync.StageReport(
                    name: state.stage, exitCode: 20, meaning: RsyncResult.meaning(of: 20), filesTransferred: output.filesTransferred,
                    filesDeleted: output.filesDeleted, bytesTransferred: output.bytesTransferred, bytesReceived: output.bytesReceived,
                    seconds: Date().timeIntervalSince(state.stageStarted), unsafeLinks: state.current.unsafeLinks
                )
            ]
        }
    }

    /// Writes the progress file now.
    func save() {
        guard let stateDirectory else { return }
        let progress = state.withLock { state in
            let live = state.stageNumber > 0 ? state.current.liveBytes : 0
            let bytes = state.bytesDone + live
            let seconds = state.copyingSince.map { Date().timeIntervalSince($0) } ?? 0
            return SyncProgress(
                project: project, started: started, stage: state.stage, stageNumber: state.stageNumber, stages: stageCount, bytes: bytes,
                files: state.filesDone + (state.stageNumber > 0 ? state.current.liveFiles : 0), plannedBytes: state.plannedBytes,
                rate: seconds > 0.5 ? Double(bytes) / seconds : 0
            )
        }
        try? progress.save(stateDirectory: stateDirectory)
    }

    /// Keeps the progress file current until the task is cancelled.
    func keepSaving(every interval: Duration = .seconds(2)) async {
        while !Task.isCancelled {
            try? await Task.sleep(for: interval)
            if Task.isCancelled { break }
            save()
        }
    }

    /// The run ended: its last words in the log, and no progress file left behind.
    func finish(_ report: ProjectSync.Report) {
        if let log {
            let state = StatusPage.state(report)
            log.note("ended: \(state)" + (report.failure.map { ": " + $0 } ?? "") + (report.skipped.map { ": " + $0 } ?? ""))
            log.close()
        }
        if let stateDirectory { SyncProgress.remove(project: project, stateDirectory: stateDirectory) }
    }
}
