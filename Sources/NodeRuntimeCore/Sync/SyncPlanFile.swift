import Foundation
import SystemKit

/// What the sync service is doing now, for the status pages (a separate process): which projects
/// run since when, and when each waiting one runs next. `STATE/schedule.json`, rewritten by the
/// service whenever that changes.
public struct SyncPlanFile: Codable, Sendable, Equatable {
    public static let fileName = "schedule.json"

    public struct Project: Codable, Sendable, Equatable {
        /// When the running sync started; nil while waiting.
        public var running: Date?
        /// When it runs next; nil while running.
        public var next: Date?
        /// Why the next (or running) run starts.
        public var trigger: String?

        public init(running: Date? = nil, next: Date? = nil, trigger: String? = nil) {
            self.running = running
            self.next = next
            self.trigger = trigger
        }
    }

    public var written: Date
    public var projects: [String: Project]

    public init(written: Date, projects: [String: Project]) {
        self.written = written
        self.projects = projects
    }

    public func save(stateDirectory: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        encoder.dateEncodingStrategy = .iso8601
        try FileManager.default.createDirectory(atPath: stateDirectory, withIntermediateDirectories: true)
        try AtomicFile.write(Array(try encoder.encode(self)), to: stateDirectory + "/" + Self.fileName)
    }

    /// The file in `stateDirectory`, or nil when there is none (no service ran there).
    public static func load(stateDirectory: String) -> SyncPlanFile? {
        guard let data = FileManager.default.contents(atPath: stateDirectory + "/" + fileName) else { return nil }
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return try? decoder.decode(SyncPlanFile.self, from: data)
    }
}
