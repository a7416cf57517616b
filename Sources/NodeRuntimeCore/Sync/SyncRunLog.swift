import Foundation
import Synchronization

/// The log of one sync run: what rsync said in every stage (the items it changed and deleted,
/// its warnings and errors, its statistics), between lines of the node's own that say what ran and
/// how it ended. `STATE/logs/PROJECT/20261202T184500Z.log`; the newest `kept` of each project
/// stay, and `/status` links the last one (`/status/logs/PROJECT/NAME`).
///
/// A log holds at most `maxBytes`; beyond that lines are counted, not kept (a first sync of a big
/// project changes hundreds of thousands of files).
public final class SyncRunLog: Sendable {
    /// Logs kept per project.
    public static let kept = 20
    /// Largest log file.
    public static let maxBytes = 16 << 20

    /// The log's file name (`20261202T184500Z.log`), what the report keeps and `/status` links.
    public let name: String
    public let path: String
    private struct State {
        var handle: FileHandle?
        var written = 0
        var dropped = 0
    }
    private let state: Mutex<State>

    /// Starts the log of a run of `project` that started at `started`, in `stateDirectory/logs/PROJECT/`,
    /// and removes the oldest beyond `kept`. Nil when the file cannot be made (the run goes on without).
    public init?(project: String, started: Date, stateDirectory: String) {
        let directory = Self.directory(project: project, stateDirectory: stateDirectory)
        let fm = FileManager.default
        guard (try? fm.createDirectory(atPath: directory, withIntermediateDirectories: true)) != nil else { return nil }
        var name = Self.fileName(started)
        var attempt = 1
        while fm.fileExists(atPath: directory + "/" + name) {
            attempt += 1
            name = Self.fileName(started, attempt: attempt)
        }
        guard fm.createFile(atPath: directory + "/" + name, contents: nil), let handle = FileHandle(forWritingAtPath: directory + "/" + name) else { return nil }
        self.name = name
        path = directory + "/" + name
        state = Mutex(State(handle: handle))
        Self.prune(directory: directory, keep: Self.kept)
    }

    /// Adds one line (a newline is added).
    public func write(_ line: some StringProtocol) {
        let bytes = Data((line + "\n").utf8)
        state.withLock { state in
            guard let handle = state.handle else { return }
            guard state.written + bytes.count <= Self.maxBytes else {
                state.dropped += 1
                return
            }
            state.written += bytes.count
            try? handle.write(contentsOf: bytes)
        }
    }

    /// A line of the node's own (`# ...`), told apart from rsync's.
    public func note(_ text: String) { write("# " + text) }

    /// Ends the log, saying how many lines did not fit.
    public func close() {
        state.withLock { state in
            guard let handle = state.handle else { return }
            if state.dropped > 0 {
                try? handle.write(contentsOf: Data("# \(state.dropped) more lines were not kept (the log holds at most \(Self.maxBytes >> 20) MiB)\n".utf8))
            }
            try? handle.close()
            state.handle = nil
        }
    }

    deinit { close() }

    /// `STATE/logs/PROJECT`.
    public static func directory(project: String, stateDirectory: String) -> String {
        stateDirectory + "/logs/" + project
    }

    /// The logs of `project`, oldest first.
    public static func names(project: String, stateDirectory: String) -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory(project: project, stateDirectory: stateDirectory))) ?? []
        return ordered(names)
    }

    /// Log names oldest first (a second run in the same second is `NAME-2.log`, after `NAME.log`).
    static func ordered(_ names: [String]) -> [String] {
        func key(_ name: String) -> (String, Int) {
            let stem = name.dropLast(4)
            guard let dash = stem.firstIndex(of: "-") else { return (String(stem), 1) }
            return (String(stem[..<dash]), Int(stem[stem.index(after: dash)...]) ?? 1)
        }
        return names.filter(isLogName).sorted { key($0) < key($1) }
    }

    /// Whether `name` is one this type writes: the only names `/status/logs/` serves.
    public static func isLogName(_ name: some StringProtocol) -> Bool {
        String(name).range(of: #"^[0-9]{8}T[0-9]{6}Z(-[0-9]+)?\.log$"#, options: .regularExpression) != nil
    }

    public static func fileName(_ date: Date, attempt: Int = 1) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyyMMdd'T'HHmmss'Z'"
        return formatter.string(from: date) + (attempt > 1 ? "-\(attempt)" : "") + ".log"
    }

    /// Leaves the newest `keep` logs in `directory` (the one being started among them).
    static func prune(directory: String, keep: Int) {
        let names = ordered((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [])
        for name in names.dropLast(keep) { try? FileManager.default.removeItem(atPath: directory + "/" + name) }
    }
}
