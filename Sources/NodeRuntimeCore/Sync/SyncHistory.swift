import Foundation
import GRDB

/// Every sync run a node made, in SQLite on mm-data (`STATE/history.sqlite`, beside the projects'
/// last reports): start, end, state, trigger, bytes, files, deletions, the upstream's freshness
/// and the error. Written by the sync service and by `mm-node sync` alike; read by `/status`
/// (the last good sync survives any number of failures) and `mm-node history`.
///
/// A run is one row; the newest `keptRuns` of each project are kept (years of runs every few
/// hours in a few MiB).
public final class SyncHistory: Sendable {
    public static let fileName = "history.sqlite"
    /// Rows kept per project.
    public static let keptRuns = 5000

    /// One run, as kept.
    public struct Run: Codable, Sendable, Equatable, FetchableRecord, PersistableRecord {
        public static let databaseTableName = "runs"
        public var id: Int64?
        public var project: String
        public var started: Date
        public var finished: Date
        /// As `/status` names it: `success`, `failed`, `refused-by-guard`, `refused-by-disk-budget`.
        public var state: String
        /// `start-up`, `interval`, `push`, `retry` or `manual`.
        public var trigger: String?
        /// Bytes received over the network (after rsync's delta encoding).
        public var bytes: Int64
        public var files: Int
        public var deletions: Int
        /// The upstream's own word on its state after the run: the first line of the recipe's first
        /// freshness file (Arch's `lastupdate`, Debian's trace), when it has one.
        public var freshness: String?
        /// Why the run failed or was refused; nil on success.
        public var error: String?
        /// Set when the run found the upstream unchanged and copied nothing.
        public var skipped: Bool
        /// The run's log in `STATE/logs/PROJECT/`, when one was kept.
        public var log: String?
        /// The project's size as the upstream listed it, when the run's dry run got that far.
        public var size: Int64?

        public mutating func didInsert(_ inserted: InsertionSuccess) { id = inserted.rowID }
    }

    private let database: DatabaseQueue
    public let path: String

    /// Opens (creating it and its schema when `readOnly` is false) the history at `path`.
    public init(path: String, readOnly: Bool = false) throws {
        self.path = path
        database = try .node(path: path, label: "sync-history", readOnly: readOnly, busy: 10, migrator: Self.migrator)
    }

    /// The history in a sync state directory (created with it when writing).
    public static func open(stateDirectory: String, readOnly: Bool = false) throws -> SyncHistory {
        if !readOnly { try FileManager.default.createDirectory(atPath: stateDirectory, withIntermediateDirectories: true) }
        return try SyncHistory(path: stateDirectory + "/" + fileName, readOnly: readOnly)
    }

    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("runs") { db in
            try db.create(table: "runs") { table in
                table.autoIncrementedPrimaryKey("id")
                table.column("project", .text).notNull()
                table.column("started", .datetime).notNull()
                table.column("finished", .datetime).notNull()
                table.column("state", .text).notNull()
                table.column("trigger", .text)
                table.column("bytes", .integer).notNull()
                table.column("files", .integer).notNull()
                table.column("deletions", .integer).notNull()
                table.column("freshness", .text)
                table.column("error", .text)
                table.column("skipped", .boolean).notNull()
            }
            try db.create(index: "runs_by_project", on: "runs", columns: ["project", "finished"])
        }
        migrator.registerMigration("runs: log and size") { db in
            try db.alter(table: "runs") { table in
                table.add(column: "log", .text)
                table.add(column: "size", .integer)
            }
        }
        return migrator
    }

    /// Keeps one finished run; returns it as kept.
    @discardableResult
    public func record(_ report: ProjectSync.Report, freshness: String? = nil) throws -> Run {
        let run = Run(
            id: nil, project: report.project, started: report.started, finished: report.finished, state: StatusPage.state(report),
            trigger: report.trigger, bytes: report.stages.reduce(0) { $0 + $1.bytesReceived },
            files: report.stages.reduce(0) { $0 + $1.filesTransferred }, deletions: report.stages.reduce(0) { $0 + $1.filesDeleted },
            freshness: freshness, error: report.failure, skipped: report.skipped != nil, log: report.log, size: report.plan?.size
        )
        return try database.write { db in
            let kept = try run.inserted(db)
            // Beyond the newest keptRuns of this project, the oldest go.
            try db.execute(
                sql: "DELETE FROM runs WHERE project = ? AND id <= (SELECT id FROM runs WHERE project = ? ORDER BY id DESC LIMIT 1 OFFSET ?)",
                arguments: [report.project, report.project, Self.keptRuns]
            )
            return kept
        }
    }

    /// The newest runs of `project` (of every project when nil), newest first.
    public func runs(project: String? = nil, limit: Int = 50) throws -> [Run] {
        try database.read { db in
            var request = Run.order(Column("id").desc).limit(limit)
            if let project { request = request.filter(Column("project") == project) }
            return try request.fetchAll(db)
        }
    }

    /// When `project` last synced successfully, whatever failed since.
    public func lastSuccess(project: String) throws -> Date? {
        try database.read { db in
            try Run.filter(Column("project") == project && Column("state") == "success").order(Column("id").desc).fetchOne(db)?.finished
        }
    }

    /// The runs of `project` that failed (or were refused) since its last success, up to `limit`.
    public func failuresSinceSuccess(project: String, limit: Int = 20) throws -> Int {
        try database.read { db in
            let states = try String.fetchAll(db, sql: "SELECT state FROM runs WHERE project = ? ORDER BY id DESC LIMIT ?", arguments: [project, limit])
            return states.prefix { $0 != "success" }.count
        }
    }

    /// The project's size as its newest run that listed the upstream found it.
    public func lastSize(project: String) throws -> Int64? {
        try database.read { db in
            try Int64.fetchOne(db, sql: "SELECT size FROM runs WHERE project = ? AND size IS NOT NULL ORDER BY id DESC LIMIT 1", arguments: [project])
        }
    }

    /// The first line of the first of `paths` (a file, or the newest file of a directory ending in
    /// `/`, other than `ignoring`) under `tree`: what the upstream says of its own state.
    public static func freshness(_ paths: [String], in tree: String, ignoring: String? = nil) -> String? {
        guard let first = paths.first else { return nil }
        var file = tree + "/" + first
        if first.hasSuffix("/") {
            let fm = FileManager.default
            let names = ((try? fm.contentsOfDirectory(atPath: file)) ?? []).filter { $0 != ignoring && $0 != ".~tmp~" }
            let newest = names.max { a, b in
                let ta = (try? fm.attributesOfItem(atPath: file + a)[.modificationDate] as? Date) ?? .distantPast
                let tb = (try? fm.attributesOfItem(atPath: file + b)[.modificationDate] as? Date) ?? .distantPast
                return ta < tb
            }
            guard let newest else { return nil }
            file += newest
        }
        guard let handle = FileHandle(forReadingAtPath: file) else { return nil }
        defer { try? handle.close() }
        let head = (try? handle.read(upToCount: 512)) ?? Data()
        let line = String(decoding: head, as: UTF8.self).split(separator: "\n").first.map(String.init)?.trimmingCharacters(in: .whitespaces)
        return line?.isEmpty == false ? line : nil
    }
}
