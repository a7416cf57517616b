import Foundation
import SystemKit

/// Where a running sync of a project stands, for `/status` (another process): its stage, the bytes
/// and files done so far against what its dry run planned, and the rate. `STATE/PROJECT.progress.json`,
/// rewritten every couple of seconds by the run itself (whether `mm-node run` or `mm-node sync`
/// started it) and removed when it ends; one not rewritten for `liveFor` is a run that died.
public struct SyncProgress: Codable, Sendable, Equatable {
    /// A progress file older than this is a run that is gone (killed, power cut).
    public static let liveFor: TimeInterval = 30

    public var project: String
    /// When the run started.
    public var started: Date
    /// The stage running now (`plan` during the dry run).
    public var stage: String
    /// Its place among the stages, from 1.
    public var stageNumber: Int
    public var stages: Int
    /// Bytes of file data copied so far in this run, all stages.
    public var bytes: Int64
    /// Files copied so far in this run.
    public var files: Int
    /// What the dry run said the run would copy (nil during the dry run).
    public var plannedBytes: Int64?
    /// Bytes per second since the first stage began.
    public var rate: Double
    /// When this was written.
    public var updated: Date

    public init(
        project: String, started: Date, stage: String, stageNumber: Int, stages: Int, bytes: Int64 = 0, files: Int = 0, plannedBytes: Int64? = nil,
        rate: Double = 0, updated: Date = Date()
    ) {
        self.project = project
        self.started = started
        self.stage = stage
        self.stageNumber = stageNumber
        self.stages = stages
        self.bytes = bytes
        self.files = files
        self.plannedBytes = plannedBytes
        self.rate = rate
        self.updated = updated
    }

    public static func path(project: String, stateDirectory: String) -> String {
        stateDirectory + "/" + project + ".progress.json"
    }

    public func save(stateDirectory: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.dateEncodingStrategy = .iso8601
        try AtomicFile.write(Array(try encoder.encode(self)), to: Self.path(project: project, stateDirectory: stateDirectory))
    }

    /// The progress of a run of `project` that is alive now (written within `liveFor`), or nil.
    public static func live(project: String, stateDirectory: String, now: Date = Date()) -> SyncProgress? {
        guard let data = FileManager.default.contents(atPath: path(project: project, stateDirectory: stateDirectory)) else { return nil }
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        guard let progress = try? decoder.decode(SyncProgress.self, from: data), now.timeIntervalSince(progress.updated) < liveFor else { return nil }
        return progress
    }

    public static func remove(project: String, stateDirectory: String) {
        try? FileManager.default.removeItem(atPath: path(project: project, stateDirectory: stateDirectory))
    }
}
