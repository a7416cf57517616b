import Foundation
import Logging
import Subprocess
import SystemPackage

/// A tool is missing, or ran and failed.
public struct CommandError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// The named tools are not installed.
        case missingTools([Tool])
        /// The tool ran and exited unsuccessfully.
        case failed(status: String)
    }

    public var kind: Kind
    /// The command line that was run (empty for missing tools).
    public var commandLine: [String]
    /// The last lines the tool printed, for the error message.
    public var outputTail: String

    public var description: String {
        switch kind {
        case .missingTools(let tools):
            let names = tools.map(\.name).joined(separator: ", ")
            let packages = Set(tools.map(\.package)).sorted().joined(separator: " ")
            return "missing tool\(tools.count == 1 ? "" : "s") on this machine: \(names); install with: apt-get install \(packages)"
        case .failed(let status):
            let shown = commandLine.joined(separator: " ")
            let tail = outputTail.isEmpty ? "" : "\n--- last output ---\n\(outputTail)"
            return "`\(shown)` failed (\(status))\(tail)"
        }
    }
}
