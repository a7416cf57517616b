import Foundation
import Subprocess
import SystemPackage

/// A command a recipe runs before (`pre-hook`) or after (`post-hook`) each run of its project, as
/// the sync's user, with what the run is about in its environment:
///
/// - `MM_PROJECT`, `MM_PATH` (the project's tree), `MM_UPSTREAM` (`rsync://HOST/MODULE/`),
///   `MM_TRIGGER` (`start-up`, `interval`, `push`, `retry`, `manual`), `MM_LOG` (the run's log);
/// - after the run also `MM_RESULT` (`success`, `skipped`: the upstream had not changed,
///   `failed`, `refused-by-guard`, `refused-by-disk-budget`), `MM_FAILURE` (why, in words),
///   `MM_BYTES` and `MM_FILES` (what the run received).
///
/// A pre hook that fails (exits non-zero, cannot start, outlives `timeout`) fails the run before
/// it changes anything; a post hook that fails is recorded in the report, the run's result stands.
/// What a hook prints goes to the run's log.
public struct SyncHook: Sendable, Equatable {
    /// The program and its arguments (no shell).
    public var command: [String]
    public var timeout: Duration = .seconds(600)

    public init(command: [String]) { self.command = command }

    /// How a hook ended: nil when it succeeded, otherwise why not, in words.
    func run(environment: [String: String], log: SyncRunLog?) async -> String? {
        guard let program = command.first else { return nil }
        let name = (program as NSString).lastPathComponent
        let arguments = Array(command.dropFirst())
        let timeout = self.timeout
        log?.note("hook: " + command.joined(separator: " "))
        let outcome: Result<(TerminationStatus, String), any Error>? = await withTaskGroup(of: Result<(TerminationStatus, String), any Error>?.self) { group in
            group.addTask {
                var options = PlatformOptions()
                options.teardownSequence = [.send(signal: .terminate, allowedDurationToNextStep: .seconds(5))]
                var updates: [Environment.Key: String?] = [:]
                for (key, value) in environment { updates[Environment.Key(stringLiteral: key)] = value }
                do {
                    let result = try await Subprocess.run(
                        .path(FilePath(program)), arguments: Arguments(arguments), environment: .inherit.updating(updates), platformOptions: options,
                        input: .none, output: .string(limit: 1 << 20), error: .string(limit: 1 << 20)
                    )
                    return .success((result.terminationStatus, result.standardOutput + result.standardError))
                } catch {
                    return .failure(error)
                }
            }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first
        }
        switch outcome {
        case nil:
            log?.note("hook \(name): stopped after \(timeout)")
            return "\(name) took longer than \(timeout) and was stopped"
        case .failure(let error):
            log?.note("hook \(name): cannot run: \(error)")
            return "\(name) cannot run: \(error)"
        case .success(let (status, output)):
            let lines = output.split(separator: "\n")
            for line in lines { log?.write(line) }
            if case .exited(0) = status { return nil }
            let said = lines.last.map { ": \($0)" } ?? ""
            log?.note("hook \(name): \(status)")
            switch status {
            case .exited(let code): return "\(name) exited \(code)\(said)"
            case .signaled(let signal): return "\(name) was killed by signal \(signal)\(said)"
            }
        }
    }
}
