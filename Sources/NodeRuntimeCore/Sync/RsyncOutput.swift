import Foundation

/// What rsync says while a stage runs, read line by line as it comes: the live byte count and
/// files done (`--info=progress2`), the items it changes and deletes (`--out-format`), the symlinks
/// `--safe-links` drops (`--info=symsafe1`), and the closing `--stats`.
///
/// The progress lines are counted, not logged; everything else goes to the run's log.
struct RsyncOutput: Sendable, Equatable {
    /// What a line was.
    enum Line: Equatable {
        /// A `--info=progress2` update (rewritten in place on a terminal; not worth a log line).
        case progress
        /// Anything else: an item, a deletion, a warning, a statistic.
        case text
    }

    /// The `--out-format` the stages run with: the change, the size and the name (a link's target).
    static let format = "%i %l %n%L"
    /// `--info` for a stage: names and unsafe symlinks mentioned, the whole transfer's progress.
    static let info = "name1,symsafe1,progress2"

    /// The `--stats` figures, once rsync printed them (at the end of a stage that did not fail).
    var stats = RsyncResult(exitCode: -1)
    /// Whether the `--stats` block was seen.
    var sawStats = false
    /// Bytes of file data done so far in this stage (progress2's first column).
    var liveBytes: Int64 = 0
    /// Files transferred so far (progress2's `xfr#N`).
    var liveFiles = 0
    /// `*deleting` items seen.
    var deletions = 0
    /// Symlinks `--safe-links` left out because they point outside the tree or are absolute.
    var unsafeLinks = 0

    /// Reads one line of standard output or error.
    mutating func read(_ line: Substring) -> Line {
        let trimmed = line.drop { $0 == " " }
        if trimmed.hasPrefix("ignoring unsafe symlink") {
            unsafeLinks += 1
            return .text
        }
        if line.hasPrefix("*deleting") {
            deletions += 1
            return .text
        }
        if let progress = Self.progress(trimmed) {
            liveBytes = max(liveBytes, progress.bytes)
            if let files = progress.files { liveFiles = max(liveFiles, files) }
            return .progress
        }
        if line.hasPrefix("Number of files:") { sawStats = true }
        stats.readStats(String(line))
        return .text
    }

    /// `  1,234,567  12%  1.23MB/s  0:00:12 (xfr#3, to-chk=10/20)`: the bytes and, when given, the
    /// files transferred so far; nil for any other line.
    static func progress(_ line: Substring) -> (bytes: Int64, files: Int?)? {
        let fields = line.split(separator: " ", omittingEmptySubsequences: true)
        guard fields.count >= 2, fields[1].hasSuffix("%"), let bytes = Int64(fields[0].filter { $0 != "," }) else { return nil }
        var files: Int?
        if let transfer = line.range(of: "xfr#") {
            files = Int(line[transfer.upperBound...].prefix { $0.isNumber })
        }
        return (bytes, files)
    }

    /// The stage's figures: `--stats` when rsync printed them; otherwise (a stage that failed or
    /// was stopped) what the progress lines counted, so a failed run still says what it received.
    var result: RsyncResult {
        var result = stats
        if !sawStats {
            result.filesTransferred = liveFiles
            result.bytesTransferred = liveBytes
            result.bytesReceived = liveBytes
            result.filesDeleted = deletions
        }
        return result
    }
}
