import Foundation
import Yams

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
