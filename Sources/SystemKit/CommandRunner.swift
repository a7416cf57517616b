import Foundation
import Logging
import Subprocess
import SystemPackage

/// Runs external tools through swift-subprocess, turning failures into `CommandError`s that
/// carry the command line and the end of its output.
public struct CommandRunner: Sendable {
    public var logger: Logger
    /// Extra environment for every command (e.g. `SOURCE_DATE_EPOCH`).
    public var environment: [String: String]

    public init(logger: Logger, environment: [String: String] = [:]) {
        self.logger = logger
        self.environment = environment
    }

    /// Throws `missingTools` naming every absent tool and the packages that provide them.
    public static func require(_ tools: [Tool]) throws(CommandError) {
        let missing = tools.filter { $0.locate() == nil }
        guard missing.isEmpty else { throw CommandError(kind: .missingTools(missing), commandLine: [], outputTail: "") }
    }

    /// Runs `tool` with `arguments` and returns its standard output. Standard error is kept for
    /// the error message. `input` is fed to standard input when given.
    @discardableResult
    public func run(
        _ tool: Tool,
        _ arguments: [String],
        environment extra: [String: String] = [:],
        workingDirectory: String? = nil,
        input: String? = nil,
        outputLimit: Int = 16 << 20
    ) async throws -> String {
        guard let executable = tool.locate() else { try CommandRunner.require([tool]); return "" }
        let commandLine = [tool.name] + arguments
        logger.debug("run", metadata: ["command": "\(commandLine.joined(separator: " "))"])
        let result = try await Subprocess.run(
            .path(FilePath(executable)),
            arguments: Arguments(arguments),
            environment: mergedEnvironment(extra),
            workingDirectory: workingDirectory.map { FilePath($0) },
            input: .string(input ?? ""),
            output: .string(limit: outputLimit),
            error: .string(limit: 4 << 20)
        )
        guard result.terminationStatus.isSuccess else {
            let combined = result.standardError + result.standardOutput
            throw CommandError(
                kind: .failed(status: "\(result.terminationStatus)"),
                commandLine: commandLine,
                outputTail: Self.tail(combined, lines: 30)
            )
        }
        return result.standardOutput
    }

    /// Runs a long tool, handing every output line (stdout and stderr merged) to `onLine` as it
    /// arrives; the last 40 lines go into the error if it fails.
    public func stream(
        _ tool: Tool,
        _ arguments: [String],
        environment extra: [String: String] = [:],
        workingDirectory: String? = nil,
        onLine: @escaping @Sendable (String) -> Void
    ) async throws {
        guard let executable = tool.locate() else { try CommandRunner.require([tool]); return }
        let commandLine = [tool.name] + arguments
        logger.debug("run", metadata: ["command": "\(commandLine.joined(separator: " "))"])
        let result = try await Subprocess.run(
            .path(FilePath(executable)),
            arguments: Arguments(arguments),
            environment: mergedEnvironment(extra),
            workingDirectory: workingDirectory.map { FilePath($0) },
            input: .none,
            output: .sequence,
            error: .combinedWithOutput
        ) { execution -> [String] in
            var recent: [String] = []
            for try await line in execution.standardOutput.strings(bufferingPolicy: .maxLineLength(64 << 10)) {
                let trimmed = line.trimmingCharacters(in: .newlines)
                recent.append(trimmed)
                if recent.count > 40 { recent.removeFirst(recent.count - 40) }
                onLine(trimmed)
            }
            return recent
        }
        guard result.terminationStatus.isSuccess else {
            throw CommandError(
                kind: .failed(status: "\(result.terminationStatus)"),
                commandLine: commandLine,
                outputTail: result.closureResult.joined(separator: "\n")
            )
        }
    }

    private func mergedEnvironment(_ extra: [String: String]) -> Environment {
        var updates: [Environment.Key: String?] = [:]
        for (key, value) in environment.merging(extra, uniquingKeysWith: { $1 }) {
            updates[Environment.Key(stringLiteral: key)] = value
        }
        return .inherit.updating(updates)
    }

    static func tail(_ text: String, lines: Int) -> String {
        text.split(separator: "\n", omittingEmptySubsequences: false).suffix(lines).joined(separator: "\n")
    }
}
