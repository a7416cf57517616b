import Foundation
import SystemKit

/// Fedora's and EPEL's mirror check-in (MirrorManager's `report_mirror`), spoken natively: after
/// each good sync the node tells MirrorManager which directories of each category it carries, so
/// the mirror lists send clients to it. Read from the `report_mirror.conf` the MirrorManager admin
/// pages hand out (the same INI file the Python client reads), sent as that client sends it: the
/// configuration as JSON, bzip2-compressed, URL-safe base64, in an XML-RPC `checkin` call to the
/// `[global] server`.
public struct MirrorManagerCheckin: Sendable {
    /// The `[section]`s of `report_mirror.conf` as MirrorManager wants them: lower-cased names,
    /// each a map of its options; a category's `path` replaced by its `dirtree`.
    public var sections: [String: [String: String]]
    /// Category (lower-cased section name) → the directory on the node it describes.
    public var categories: [String: String]
    /// `[global] server`: the XML-RPC endpoint.
    public var server: String

    /// Reads `report_mirror.conf`; every problem is reported at once with its line.
    public static func parse(_ text: String, file: String) throws(ConfigError) -> MirrorManagerCheckin {
        var problems: [ConfigProblem] = []
        var sections: [String: [String: String]] = [:]
        var current: String?
        for (number, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") || line.hasPrefix(";") { continue }
            if line.hasPrefix("[") {
                guard line.hasSuffix("]"), line.count > 2 else {
                    problems.append(ConfigProblem(file: file, line: number + 1, field: "", message: "expected a section such as [site], found \(line)"))
                    continue
                }
                current = line.dropFirst().dropLast().trimmingCharacters(in: .whitespaces).lowercased()
                if sections[current!] == nil { sections[current!] = [:] }
                continue
            }
            guard let separator = line.firstIndex(where: { $0 == "=" || $0 == ":" }) else {
                problems.append(ConfigProblem(file: file, line: number + 1, field: "", message: "expected name = value, found \(line)"))
                continue
            }
            guard let section = current else {
                problems.append(ConfigProblem(file: file, line: number + 1, field: "", message: "an option before any [section]"))
                continue
            }
            let name = line[..<separator].trimmingCharacters(in: .whitespaces).lowercased()
            sections[section]?[name] = line[line.index(after: separator)...].trimmingCharacters(in: .whitespaces)
        }
        for (section, required) in [("global", ["enabled", "server"]), ("site", ["enabled", "name", "password"]), ("host", ["enabled", "name"])] {
            guard let options = sections[section] else {
                problems.append(ConfigProblem(file: file, line: nil, field: section, message: "missing section [\(section)]"))
                continue
            }
            for option in required where options[option] == nil {
                problems.append(ConfigProblem(file: file, line: nil, field: "\(section).\(option)", message: "missing (required)"))
            }
        }
        let server = sections["global"]?["server"] ?? ""
        if !server.isEmpty, !(server.hasPrefix("https://") || server.hasPrefix("http://")) {
            problems.append(ConfigProblem(file: file, line: nil, field: "global.server", message: "expected an http(s):// URL, found \(server)"))
        }
        var categories: [String: String] = [:]
        for (name, options) in sections where !["global", "site", "host", "stats"].contains(name) {
            guard let path = options["path"], options["enabled"] != nil else {
                problems.append(ConfigProblem(file: file, line: nil, field: name, message: "a category needs enabled and path"))
                continue
            }
            if options["enabled"] == "1" { categories[name] = path }
        }
        guard problems.isEmpty else { throw ConfigError(problems: problems) }
        return MirrorManagerCheckin(sections: sections, categories: categories, server: server)
    }

    /// Whether `[global] enabled = 1` (the client checks in only then).
    public var enabled: Bool { sections["global"]?["enabled"] == "1" }

    /// What MirrorManager receives, before compression: the sections, each enabled category with
    /// the directories under its path (relative, `""` for the top; each maps to an empty file list,
    /// which MirrorManager ignores), its `path` left out, and a disabled section left out.
    public func configuration() -> [String: Any] {
        var config: [String: Any] = ["version": 0, "stats": [String: String]()]
        for (name, options) in sections where name != "stats" {
            if options["enabled"].map({ $0 != "1" }) == true, name != "global" { continue }
            var section: [String: Any] = options
            if let path = categories[name] {
                section["path"] = nil
                section["dirtree"] = Self.directories(under: path).reduce(into: [String: [String: Int]]()) { $0[$1] = [:] }
            }
            config[name] = section
        }
        return config
    }

    /// The directories under `path`, relative to it (`""` for `path` itself), sorted.
    static func directories(under path: String) -> [String] {
        var found = [""]
        let fm = FileManager.default
        guard let walk = fm.enumerator(at: URL(fileURLWithPath: path), includingPropertiesForKeys: [.isDirectoryKey, .isSymbolicLinkKey]) else { return found }
        let base = URL(fileURLWithPath: path).standardizedFileURL.path
        for case let url as URL in walk {
            guard let values = try? url.resourceValues(forKeys: [.isDirectoryKey, .isSymbolicLinkKey]), values.isDirectory == true, values.isSymbolicLink != true else { continue }
            if url.lastPathComponent == ".~tmp~" {
                walk.skipDescendants()
                continue
            }
            let full = url.standardizedFileURL.path
            if full.hasPrefix(base + "/") { found.append(String(full.dropFirst(base.count + 1))) }
        }
        return found.sorted()
    }

    /// The `checkin` argument: JSON, bzip2, URL-safe base64 (with padding, as Python writes it).
    public func payload() throws -> String {
        let json = try JSONSerialization.data(withJSONObject: configuration(), options: [.sortedKeys])
        let compressed = try Bzip2.compress(Array(json))
        return Data(compressed).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
    }

    /// The XML-RPC request body.
    public static func requestBody(_ payload: String) -> String {
        // The payload is URL-safe base64: nothing in it needs XML escaping.
        """
        <?xml version="1.0"?>
        <methodCall><methodName>checkin</methodName><params><param><value><string>\(payload)</string></value></param></params></methodCall>

        """
    }

    /// The text of the first `<string>` (after `marker`, when given) in an XML-RPC answer.
    public static func firstString(in body: String, after marker: String? = nil) -> String? {
        var rest = Substring(body)
        if let marker, let found = rest.range(of: marker) { rest = rest[found.upperBound...] }
        guard let open = rest.range(of: "<string>"), let close = rest.range(of: "</string>", range: open.upperBound..<rest.endIndex) else { return nil }
        return String(rest[open.upperBound..<close.lowerBound])
            .replacingOccurrences(of: "&lt;", with: "<").replacingOccurrences(of: "&gt;", with: ">").replacingOccurrences(of: "&amp;", with: "&")
    }
}
