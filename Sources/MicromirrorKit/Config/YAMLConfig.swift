import Foundation
import Yams

/// Loads YAML files for validation.
public enum YAMLConfig {
    /// Reads `path` and returns its top-level mapping, or throws naming the file and line.
    public static func load(path: String) throws(ConfigError) -> YAMLMapping {
        try parse(text(path: path).text, file: path)
    }

    /// The file's bytes and their text; a missing, unreadable or non-UTF-8 file is a `ConfigError`.
    public static func text(path: String) throws(ConfigError) -> (text: String, bytes: [UInt8]) {
        guard let data = FileManager.default.contents(atPath: path) else {
            let reason = FileManager.default.fileExists(atPath: path) ? "cannot be read" : "does not exist"
            throw ConfigError(problems: [ConfigProblem(file: path, line: nil, field: "", message: "file \(reason)")])
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw ConfigError(problems: [ConfigProblem(file: path, line: nil, field: "", message: "not UTF-8 text")])
        }
        return (text, Array(data))
    }

    /// Parses YAML `text`; `file` names it in errors.
    public static func parse(_ text: String, file: String) throws(ConfigError) -> YAMLMapping {
        let diagnostics = ConfigDiagnostics(file: file)
        let node: Node?
        do {
            node = try Yams.compose(yaml: text)
        } catch let error as YamlError {
            throw ConfigError(problems: [ConfigProblem(file: file, line: error.line, field: "", message: "invalid YAML: \(error.summary)")])
        } catch {
            throw ConfigError(problems: [ConfigProblem(file: file, line: nil, field: "", message: "invalid YAML: \(error)")])
        }
        guard let node, case .mapping(let mapping) = node else {
            throw ConfigError(problems: [ConfigProblem(file: file, line: node?.mark?.line ?? 1, field: "", message: "expected a mapping of keys to values at the top level")])
        }
        return YAMLMapping(mapping: mapping, field: "", line: node.mark?.line, diagnostics: diagnostics)
    }
}
