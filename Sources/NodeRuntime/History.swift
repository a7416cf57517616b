import ArgumentParser
import Foundation
import MicromirrorKit
import NodeRuntimeCore

struct History: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "The sync runs this node made (newest first), from its history on mm-data."
    )

    @Argument(help: "Only this project.") var project: String?
    @Option(help: "At most this many runs.") var limit = 20
    @Flag(help: "As JSON lines, one run per line.") var json = false
    @Option(help: "Sync state directory, where history.sqlite is.") var syncState = NodePaths.standard.syncState

    func run() async throws {
        let path = syncState + "/" + SyncHistory.fileName
        guard FileManager.default.fileExists(atPath: path) else {
            throw ValidationError("\(path) does not exist: this node has not finished a sync yet (or --sync-state is not where mm-node run keeps it)")
        }
        let runs = try SyncHistory(path: path, readOnly: true).runs(project: project, limit: limit)
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            encoder.dateEncodingStrategy = .iso8601
            for run in runs { print(String(decoding: try encoder.encode(run), as: UTF8.self)) }
            return
        }
        let dates = ISO8601DateFormatter()
        print("finished              project          state                   trigger   seconds  files  deleted  received  freshness / error")
        for run in runs {
            let seconds = Int(run.finished.timeIntervalSince(run.started))
            let state = run.skipped ? "success (unchanged)" : run.state
            let note = run.error ?? run.freshness ?? ""
            print(
                dates.string(from: run.finished).padding(toLength: 22, withPad: " ", startingAt: 0)
                    + run.project.padding(toLength: 17, withPad: " ", startingAt: 0)
                    + state.padding(toLength: 24, withPad: " ", startingAt: 0)
                    + (run.trigger ?? "-").padding(toLength: 10, withPad: " ", startingAt: 0)
                    + String(seconds).leftPadded(7) + String(run.files).leftPadded(7) + String(run.deletions).leftPadded(9)
                    + ByteSize.format(run.bytes).leftPadded(10) + "  " + note
            )
        }
    }
}

extension String {
    fileprivate func leftPadded(_ width: Int) -> String { count >= width ? self : String(repeating: " ", count: width - count) + self }
}
