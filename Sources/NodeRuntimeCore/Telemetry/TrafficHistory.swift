import Foundation
import GRDB

/// Bytes over time, in SQLite on mm-data (`STATE/traffic/traffic.sqlite`): per project (HTTP bytes
/// sent) and per interface and direction (`/proc/net/dev`), a row per series and minute for the
/// last two days and per series and hour for the last year. Old rows are deleted as new ones come,
/// so the file stays the size of those windows (SQLite reuses the freed pages): a few MiB for a
/// dozen series, surviving restarts and image updates.
public final class TrafficHistory: Sendable {
    public static let fileName = "traffic.sqlite"
    /// How long each resolution is kept.
    public static let minutesKept: TimeInterval = 2 * 86400
    public static let hoursKept: TimeInterval = 366 * 86400

    public enum Resolution: String, Sendable {
        case minute, hour
        var seconds: Int64 { self == .minute ? 60 : 3600 }
        var kept: TimeInterval { self == .minute ? TrafficHistory.minutesKept : TrafficHistory.hoursKept }
    }

    /// The series name of a project's HTTP bytes, and of an interface's bytes one way.
    public static func projectSeries(_ project: String) -> String { "project:" + project }
    public static func interfaceSeries(_ interface: String, sent: Bool) -> String { "nic:\(interface):\(sent ? "sent" : "received")" }

    private let database: DatabaseQueue
    public let path: String

    public init(path: String, readOnly: Bool = false) throws {
        self.path = path
        database = try .node(path: path, label: "traffic-history", readOnly: readOnly, busy: 5, migrator: Self.migrator)
    }

    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("traffic") { db in
            for table in ["minute", "hour"] {
                try db.create(table: table, options: [.withoutRowID]) { t in
                    t.column("series", .text).notNull()
                    t.column("t", .integer).notNull()
                    t.column("bytes", .integer).notNull()
                    t.primaryKey(["series", "t"])
                }
            }
        }
        return migrator
    }

    /// Adds `bytes` per series at `time` to both resolutions, and drops what has aged out of each.
    public func add(_ bytes: [String: Int64], at time: Date) throws {
        let seconds = Int64(time.timeIntervalSince1970)
        try database.write { db in
            for resolution in [Resolution.minute, .hour] {
                let slot = seconds / resolution.seconds * resolution.seconds
                for (series, count) in bytes where count > 0 {
                    try db.execute(
                        sql: "INSERT INTO \(resolution.rawValue) (series, t, bytes) VALUES (?, ?, ?) ON CONFLICT(series, t) DO UPDATE SET bytes = bytes + excluded.bytes",
                        arguments: [series, slot, count]
                    )
                }
                try db.execute(sql: "DELETE FROM \(resolution.rawValue) WHERE t < ?", arguments: [seconds - Int64(resolution.kept)])
            }
        }
    }

    /// The bytes of every series in `[from, to)`, summed into buckets of `bucket` seconds (a
    /// multiple of the resolution), as (bucket start, bytes); a bucket with nothing is absent.
    public func buckets(_ resolution: Resolution, from: Date, to: Date, bucket: Int64) throws -> [String: [(start: Date, bytes: Int64)]] {
        let width = max(resolution.seconds, bucket / resolution.seconds * resolution.seconds)
        let rows = try database.read { db in
            try Row.fetchAll(
                db,
                sql: "SELECT series, (t / ?) * ? AS b, SUM(bytes) AS bytes FROM \(resolution.rawValue) WHERE t >= ? AND t < ? GROUP BY series, b ORDER BY series, b",
                arguments: [width, width, Int64(from.timeIntervalSince1970), Int64(to.timeIntervalSince1970)]
            )
        }
        var result: [String: [(start: Date, bytes: Int64)]] = [:]
        for row in rows {
            let series: String = row["series"]
            let start: Int64 = row["b"]
            let bytes: Int64 = row["bytes"]
            result[series, default: []].append((Date(timeIntervalSince1970: TimeInterval(start)), bytes))
        }
        return result
    }

    /// Rows in each resolution (what keeps the file's size bounded), for tests and `/metrics`-like checks.
    public func rowCounts() throws -> (minutes: Int, hours: Int) {
        try database.read { db in
            (try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM minute") ?? 0, try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM hour") ?? 0)
        }
    }
}
