import Foundation
import Yams

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
