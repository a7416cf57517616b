import GRDB

extension DatabaseQueue {
    /// Opens one of the node's SQLite files on mm-data: read-only for a reader (`/status`), or
    /// read-write with `migrator` applied first. Writers in other processes (the sync service and a
    /// sync by hand, the server and the status page) wait up to `busy` seconds for each other.
    static func node(path: String, label: String, readOnly: Bool, busy: Double, migrator: DatabaseMigrator) throws -> DatabaseQueue {
        var configuration = Configuration()
        configuration.readonly = readOnly
        configuration.busyMode = .timeout(busy)
        configuration.label = label
        let database = try DatabaseQueue(path: path, configuration: configuration)
        if !readOnly { try migrator.migrate(database) }
        return database
    }
}
