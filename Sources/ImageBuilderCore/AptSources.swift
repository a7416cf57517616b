import Foundation

/// The apt sources the rootfs is built from. By default they are the build machine's own Debian
/// sources (so no mirror host is written into the project), with the image's components.
enum AptSources {
    /// deb822 text for `suite` with `components`, derived from the host's apt configuration.
    static func fromHost(suite: String, components: [String], root: String = "/etc/apt") throws -> String {
        var paragraphs: [[String: String]] = []
        let directory = root + "/sources.list.d"
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).sorted()
        for name in names where name.hasSuffix(".sources") {
            let text = (try? String(contentsOfFile: directory + "/" + name, encoding: .utf8)) ?? ""
            paragraphs += parseDeb822(text)
        }
        for name in ["sources.list"] + names.filter({ $0.hasSuffix(".list") }).map({ "sources.list.d/" + $0 }) {
            let text = (try? String(contentsOfFile: root + "/" + name, encoding: .utf8)) ?? ""
            paragraphs += parseOneLine(text)
        }
        let suites = [suite, "\(suite)-updates", "\(suite)-security"]
        var out: [String] = []
        for p in paragraphs {
            guard (p["Types"] ?? "").split(separator: " ").contains("deb"),
                let uris = p["URIs"], let pSuites = p["Suites"]
            else { continue }
            let wanted = pSuites.split(separator: " ").map(String.init).filter { suites.contains($0) }
            guard !wanted.isEmpty else { continue }
            var block = "Types: deb\nURIs: \(uris)\nSuites: \(wanted.joined(separator: " "))\nComponents: \(components.joined(separator: " "))\n"
            if let signedBy = p["Signed-By"] { block += "Signed-By: \(signedBy)\n" }
            out.append(block)
        }
        guard !out.isEmpty else {
            throw BuildError(
                stage: "rootfs",
                "the build machine has no apt source for \(suite) in \(root); add one, or set distribution.mirror in the image definition"
            )
        }
        return out.joined(separator: "\n")
    }

    static func parseDeb822(_ text: String) -> [[String: String]] {
        var result: [[String: String]] = []
        var current: [String: String] = [:]
        var lastKey: String?
        for raw in text.split(separator: "\n", omittingEmptySubsequences: false) {
            let line = String(raw)
            if line.hasPrefix("#") { continue }
            if line.trimmingCharacters(in: .whitespaces).isEmpty {
                if !current.isEmpty { result.append(current) }
                current = [:]
                lastKey = nil
                continue
            }
            if line.first == " " || line.first == "\t", let key = lastKey {
                current[key, default: ""] += "\n" + line
                continue
            }
            guard let colon = line.firstIndex(of: ":") else { continue }
            let key = String(line[..<colon])
            current[key] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            lastKey = key
        }
        if !current.isEmpty { result.append(current) }
        return result.filter { ($0["Enabled"] ?? "yes") != "no" }
    }

    static func parseOneLine(_ text: String) -> [[String: String]] {
        text.split(separator: "\n").compactMap { raw in
            var fields = raw.split(separator: " ").map(String.init)
            guard fields.first == "deb" else { return nil }
            fields.removeFirst()
            var signedBy: String?
            if let option = fields.first, option.hasPrefix("[") {
                fields.removeFirst()
                signedBy = option.dropFirst().dropLast().split(separator: " ").first { $0.hasPrefix("signed-by=") }
                    .map { String($0.dropFirst("signed-by=".count)) }
            }
            guard fields.count >= 2 else { return nil }
            var p = ["Types": "deb", "URIs": fields[0], "Suites": fields[1]]
            if let signedBy { p["Signed-By"] = signedBy }
            return p
        }
    }
}
