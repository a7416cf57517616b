import Foundation
import MicromirrorKit

/// The fleet's nodes that can serve a project now, for the distributions' mirror lists: up, and
/// the project synced and not stale on them; freshest first. Nodes serve plain HTTP on port 80 at
/// their host name.
public struct FleetMirrorList: Sendable {
    public enum Format: String, CaseIterable, Sendable {
        /// One base URL a line.
        case plain
        /// pacman's mirrorlist: `Server = http://HOST/PROJECT/$repo/os/$arch`.
        case arch
        /// A Metalink 4 document (RFC 5854) for one file, a URL per node.
        case metalink
        /// Each node's `mirrorz.json`, for a MirrorZ aggregator's site list.
        case mirrorz
    }

    public var project: String
    /// The nodes that qualify, freshest first: (host name, last good sync).
    public var nodes: [(node: String, lastSuccess: Date)]

    public init(view: FleetView, project: String) {
        self.project = project
        nodes = view.nodes.compactMap { node in
            guard node.up, let entry = node.projects.first(where: { $0.name == project }), !entry.stale, let success = entry.lastSuccess else { return nil }
            return (node.node, success)
        }
        .sorted { $0.lastSuccess > $1.lastSuccess || ($0.lastSuccess == $1.lastSuccess && $0.node < $1.node) }
    }

    /// The list in `format`; `file` is the path within the project a metalink is for.
    public func render(_ format: Format, file: String? = nil) throws -> String {
        let bases = nodes.map { "http://\($0.node)/\(project)/" }
        switch format {
        case .plain:
            return bases.map { $0 + "\n" }.joined()
        case .arch:
            return "## \(project) on the micromirror fleet: nodes up and fresh, freshest first\n" + bases.map { "Server = \($0)$repo/os/$arch\n" }.joined()
        case .mirrorz:
            let sites = nodes.map { ["abbr": $0.node, "url": "http://\($0.node)/mirrorz.json"] }
            let data = try JSONSerialization.data(withJSONObject: sites, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
            return String(decoding: data, as: UTF8.self) + "\n"
        case .metalink:
            guard let file, !file.isEmpty else { throw BuildError(stage: "mirrorlist", "a metalink is for one file: give --file PATH (within \(project))") }
            let path = file.hasPrefix("/") ? String(file.dropFirst()) : file
            let name = (path as NSString).lastPathComponent
            let urls = nodes.enumerated().map { index, node in
                "    <url priority=\"\(index + 1)\">\(Self.escape("http://\(node.node)/\(project)/\(path)"))</url>\n"
            }
            return """
                <?xml version="1.0" encoding="UTF-8"?>
                <metalink xmlns="urn:ietf:params:xml:ns:metalink">
                  <file name="\(Self.escape(name))">
                \(urls.joined())  </file>
                </metalink>

                """
        }
    }

    static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
            .replacingOccurrences(of: "\"", with: "&quot;")
    }
}

/// Prometheus' file-based service discovery from the fleet: one target per node that is up (its
/// first address, `PORT`), labelled with the node and its sponsor, for a `file_sd_configs` entry
/// the NOC's Prometheus re-reads whenever the file changes.
public enum FleetScrapeTargets {
    public static func fileSD(view: FleetView, port: Int = 80) throws -> String {
        let groups: [[String: Any]] = view.nodes.filter(\.up).compactMap { node in
            guard let address = node.addresses.first?.split(separator: "/").first.map(String.init) else { return nil }
            let host = address.contains(":") ? "[\(address)]" : address
            return ["targets": ["\(host):\(port)"], "labels": ["node": node.node, "sponsor": node.sponsor]]
        }
        let data = try JSONSerialization.data(withJSONObject: groups, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
        return String(decoding: data, as: UTF8.self) + "\n"
    }
}
