import Foundation

/// What one rsync run ended with: its exit status read the way a mirror operator reads it, and the
/// figures from `--stats`.
public struct RsyncResult: Sendable, Equatable {
    public var exitCode: Int32
    /// Files rsync created or replaced.
    public var filesTransferred: Int = 0
    /// Files removed because the upstream no longer has them.
    public var filesDeleted: Int = 0
    /// Size of the files transferred.
    public var bytesTransferred: Int64 = 0
    /// Bytes that crossed the network (after rsync's delta encoding).
    public var bytesReceived: Int64 = 0
    /// Files, directories and links in the upstream's list (`Number of files`).
    public var files: Int = 0
    /// Of those, the ones the destination did not have (`Number of created files`).
    public var filesCreated: Int = 0
    /// Size of every file in the upstream's list (`Total file size`): the project's size.
    public var totalFileSize: Int64 = 0

    public init(exitCode: Int32) { self.exitCode = exitCode }

    /// Whether the tree is now what the upstream holds. 24 (files vanished upstream while we copied:
    /// normal on a mirror that is itself syncing) counts as success; 23 (some files failed) and
    /// everything else do not.
    public var succeeded: Bool { exitCode == 0 || exitCode == 24 }

    /// The exit status in words.
    public var meaning: String { Self.meaning(of: exitCode) }

    public static func meaning(of code: Int32) -> String {
        switch code {
        case 0: "success"
        case 1: "syntax or usage error (a bad recipe option?)"
        case 2: "protocol incompatibility"
        case 3: "errors selecting input/output files or directories (is the destination writable?)"
        case 5: "error starting the client-server protocol (unknown module, or the upstream refused us)"
        case 10: "error in socket I/O (the upstream is unreachable or closed the connection)"
        case 11: "error in file I/O (disk full or read-only?)"
        case 12: "error in the rsync protocol data stream (the connection broke)"
        case 20: "stopped by a signal"
        case 23: "partial transfer: some files could not be copied, deletions were skipped"
        case 24: "some files vanished upstream while being copied (normal while the upstream syncs)"
        case 25: "stopped at max-delete: the upstream dropped more files during the run than its dry run showed (is it cut short?)"
        case 30: "timed out: no data for the io-timeout"
        case 35: "timed out waiting for the upstream's rsync daemon"
        default: "rsync exit status \(code)"
        }
    }

    /// Reads the `--stats` block (printed with `--no-human-readable`).
    public mutating func readStats(_ output: String) {
        for line in output.split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 1)
            guard parts.count == 2 else { continue }
            let key = parts[0].trimmingCharacters(in: .whitespaces)
            let number = parts[1].drop { $0 == " " }.prefix { $0.isNumber || $0 == "," }.filter { $0 != "," }
            guard let value = Int64(number) else { continue }
            switch key {
            case "Number of regular files transferred": filesTransferred = Int(value)
            case "Number of deleted files": filesDeleted = Int(value)
            case "Total transferred file size": bytesTransferred = value
            case "Total bytes received": bytesReceived = value
            case "Number of files": files = Int(value)
            case "Number of created files": filesCreated = Int(value)
            case "Total file size": totalFileSize = value
            default: continue
            }
        }
    }
}
