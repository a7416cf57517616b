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

/// A YAML node with its field path, for reading values with line-numbered errors.
public struct YAMLValue {
    public let node: Node
    public let field: String
    public let diagnostics: ConfigDiagnostics

    public var line: Int? { node.mark?.line }

    /// Records a problem about this value.
    public func report(_ message: String) { diagnostics.report(line: line, field: field, message) }

    /// A scalar as text (numbers and booleans too, as written).
    public func string() -> String? {
        guard case .scalar(let scalar) = node else {
            report("expected a single value, found \(kind)")
            return nil
        }
        return scalar.string
    }

    /// A non-empty scalar string.
    public func nonEmptyString() -> String? {
        guard let text = string() else { return nil }
        guard !text.trimmingCharacters(in: .whitespaces).isEmpty else {
            report("must not be empty")
            return nil
        }
        return text
    }

    /// An integer.
    public func int() -> Int? {
        guard let text = string() else { return nil }
        guard let value = Int(text) else {
            report("expected a whole number, found \"\(text)\"")
            return nil
        }
        return value
    }

    /// A boolean (`true`/`false`, `yes`/`no`).
    public func bool() -> Bool? {
        guard let text = string() else { return nil }
        switch text.lowercased() {
        case "true", "yes", "on": return true
        case "false", "no", "off": return false
        default:
            report("expected true or false, found \"\(text)\"")
            return nil
        }
    }

    /// A byte size such as `512MiB`, `2GiB`, `64M` or `1048576`.
    public func byteSize() -> Int64? {
        guard let text = string() else { return nil }
        guard let value = ByteSize.parse(text) else {
            report("expected a size like 256MiB or 2GiB, found \"\(text)\"")
            return nil
        }
        return value
    }

    /// A sequence of values.
    public func list() -> [YAMLValue]? {
        guard case .sequence(let sequence) = node else {
            report("expected a list, found \(kind)")
            return nil
        }
        return sequence.enumerated().map { YAMLValue(node: $1, field: "\(field)[\($0)]", diagnostics: diagnostics) }
    }

    /// A list of strings.
    public func stringList() -> [String]? {
        guard let items = list() else { return nil }
        let strings = items.compactMap { $0.nonEmptyString() }
        return strings.count == items.count ? strings : nil
    }

    /// A mapping.
    public func mapping() -> YAMLMapping? {
        guard case .mapping(let mapping) = node else {
            report("expected a mapping of keys to values, found \(kind)")
            return nil
        }
        return YAMLMapping(mapping: mapping, field: field, line: line, diagnostics: diagnostics)
    }

    var kind: String {
        switch node {
        case .scalar: return "a single value"
        case .mapping: return "a mapping"
        case .sequence: return "a list"
        case .alias: return "an alias"
        }
    }
}

/// A YAML mapping that remembers which keys were read, so unknown keys can be reported.
public final class YAMLMapping {
    public let field: String
    public let line: Int?
    public let diagnostics: ConfigDiagnostics
    private var values: [String: YAMLValue] = [:]
    private var order: [String] = []
    private var used: Set<String> = []

    init(mapping: Node.Mapping, field: String, line: Int?, diagnostics: ConfigDiagnostics) {
        self.field = field
        self.line = line
        self.diagnostics = diagnostics
        for (keyNode, valueNode) in mapping {
            let key = keyNode.string ?? "\(keyNode)"
            let path = field.isEmpty ? key : "\(field).\(key)"
            if values[key] != nil {
                diagnostics.report(line: keyNode.mark?.line, field: path, "duplicate key")
                continue
            }
            values[key] = YAMLValue(node: valueNode, field: path, diagnostics: diagnostics)
            order.append(key)
        }
    }

    private func path(_ key: String) -> String { field.isEmpty ? key : "\(field).\(key)" }

    /// The value under `key`, or nil when absent.
    public func optional(_ key: String) -> YAMLValue? {
        used.insert(key)
        guard let value = values[key] else { return nil }
        if case .scalar(let scalar) = value.node, value.node.null != nil {
            return nil
        }
        return value
    }

    /// The value under `key`; reports it missing when absent.
    public func required(_ key: String) -> YAMLValue? {
        guard let value = optional(key) else {
            diagnostics.report(line: line, field: path(key), "missing (required)")
            return nil
        }
        return value
    }

    /// Whether `key` is present.
    public func has(_ key: String) -> Bool { values[key] != nil }

    /// Reports every key that was never asked for, naming the keys that are allowed.
    public func rejectUnknownKeys() {
        for key in order where !used.contains(key) {
            let known = used.sorted().joined(separator: ", ")
            diagnostics.report(line: values[key]?.line, field: path(key), "unknown key (known keys here: \(known))")
        }
    }
}

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

extension YamlError {
    var line: Int? {
        switch self {
        case .scanner(_, _, let mark, _), .parser(_, _, let mark, _), .composer(_, _, let mark, _):
            return mark.line
        case .duplicatedKeysInMapping(_, let context):
            return context.mark.line
        default:
            return nil
        }
    }

    var summary: String {
        switch self {
        case .scanner(let context, let problem, _, _), .parser(let context, let problem, _, _), .composer(let context, let problem, _, _):
            return [context?.text, problem].compactMap { $0 }.filter { !$0.isEmpty }.joined(separator: ", ")
        case .duplicatedKeysInMapping(let duplicates, _):
            return "duplicate key\(duplicates.count == 1 ? "" : "s") \(duplicates.joined(separator: ", ")) in one mapping"
        default:
            return "\(self)"
        }
    }
}

/// Parses human byte sizes.
public enum ByteSize {
    /// `512`, `64K`/`64KiB`, `256M`/`256MiB`, `2G`/`2GiB`, `2T`/`2TiB` (binary), `2GB` (decimal).
    public static func parse(_ text: String) -> Int64? {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        let digits = trimmed.prefix { $0.isNumber }
        guard !digits.isEmpty, let number = Int64(digits) else { return nil }
        let unit = trimmed.dropFirst(digits.count).trimmingCharacters(in: .whitespaces)
        let multipliers: [String: Int64] = [
            "": 1, "B": 1,
            "K": 1 << 10, "KiB": 1 << 10, "M": 1 << 20, "MiB": 1 << 20, "G": 1 << 30, "GiB": 1 << 30,
            "T": 1 << 40, "TiB": 1 << 40,
            "KB": 1_000, "MB": 1_000_000, "GB": 1_000_000_000, "TB": 1_000_000_000_000,
        ]
        guard let multiplier = multipliers[unit] else { return nil }
        let (value, overflow) = number.multipliedReportingOverflow(by: multiplier)
        return overflow ? nil : value
    }

    /// Formats bytes for people: `385.2 MiB`.
    public static func format(_ bytes: Int64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var value = Double(bytes)
        var index = 0
        while value >= 1024, index < units.count - 1 {
            value /= 1024
            index += 1
        }
        return index == 0 ? "\(bytes) B" : String(format: "%.1f %@", value, units[index])
    }
}
