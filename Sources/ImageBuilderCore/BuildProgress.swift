import Foundation
import Synchronization

/// Shows build progress: one line per stage with its elapsed time, and, on a terminal, a live
/// line with the current step, bytes, rate and ETA. Off a terminal it prints plain lines only.
public final class BuildProgress: Sendable {
    private struct State {
        var index = 0
        var stage = ""
        var stageStart = ContinuousClock.now
        var lastLive = ContinuousClock.now
        var liveShown = false
        var timings: [(String, Double)] = []
    }

    private let total: Int
    private let isTerminal: Bool
    private let write: @Sendable (String) -> Void
    private let state = Mutex(State())

    /// - Parameters:
    ///   - stages: how many stages will be reported.
    ///   - isTerminal: whether to draw a live line (stderr is a TTY).
    ///   - write: where text goes (stderr by default).
    public init(stages: Int, isTerminal: Bool = isatty(2) == 1, write: @escaping @Sendable (String) -> Void = BuildProgress.stderr) {
        self.total = stages
        self.isTerminal = isTerminal
        self.write = write
    }

    public static let stderr: @Sendable (String) -> Void = { text in
        FileHandle.standardError.write(Data(text.utf8))
    }

    /// Starts the next stage.
    public func begin(_ stage: String) {
        state.withLock { s in
            s.index += 1
            s.stage = stage
            s.stageStart = .now
            s.liveShown = false
        }
        if isTerminal { write("[\(currentIndex)/\(total)] \(stage)…\r") }
    }

    /// A step inside the stage (a tool's output line, a file being written).
    public func step(_ text: String) {
        guard isTerminal else { return }
        let line: String? = state.withLock { s in
            guard ContinuousClock.now - s.lastLive > .milliseconds(200) else { return nil }
            s.lastLive = .now
            s.liveShown = true
            return "\u{1B}[2K[\(s.index)/\(total)] \(s.stage): \(text.prefix(100))\r"
        }
        if let line { write(line) }
    }

    /// Byte progress inside the stage, with rate and ETA.
    public func bytes(_ done: Int64, of totalBytes: Int64, _ what: String) {
        guard isTerminal else { return }
        let elapsed = state.withLock { s in Self.seconds(ContinuousClock.now - s.stageStart) }
        let rate = elapsed > 0 ? Double(done) / elapsed : 0
        let eta = rate > 0 ? Double(totalBytes - done) / rate : 0
        let percent = totalBytes > 0 ? Int(100 * done / totalBytes) : 100
        step(String(format: "%@ %d%% (%@ MiB/s, ETA %.0f s)", what, percent, String(format: "%.0f", rate / 1_048_576), eta))
    }

    /// Ends the stage with a one-line summary.
    public func end(_ summary: String) {
        let (index, stage, seconds) = state.withLock { s in
            let seconds = Self.seconds(ContinuousClock.now - s.stageStart)
            s.timings.append((s.stage, seconds))
            return (s.index, s.stage, seconds)
        }
        let clear = isTerminal ? "\u{1B}[2K" : ""
        write(clear + String(format: "[%d/%d] %@: %@ (%.1f s)\n", index, total, stage, summary, seconds))
    }

    /// Stage names and their durations so far.
    public var timings: [(String, Double)] { state.withLock { $0.timings } }

    private var currentIndex: Int { state.withLock { $0.index } }

    static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }
}
