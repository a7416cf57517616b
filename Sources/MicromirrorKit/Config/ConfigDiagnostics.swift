import Foundation
import Yams

/// Collects problems while a YAML file is read, so all of them are reported at once.
public final class ConfigDiagnostics {
    public let file: String
    public private(set) var problems: [ConfigProblem] = []

    public init(file: String) { self.file = file }

    /// Records a problem at `line` in `field`.
    public func report(line: Int?, field: String, _ message: String) {
        problems.append(ConfigProblem(file: file, line: line, field: field, message: message))
    }

    /// Throws all recorded problems, if any.
    public func throwIfAny() throws(ConfigError) {
        if !problems.isEmpty { throw ConfigError(problems: problems) }
    }
}
