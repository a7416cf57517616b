import Foundation

/// The apt sources the rootfs is built from. By default they are the build machine's own Debian
/// sources (so no mirror host is written into the project), with the image's components.
public enum AptSources {
    /// One source as apt reads it, from either format, with where it was written.
    public struct Source: Sendable, Equatable {
        public var types: [String]
        public var uris: [String]
        public var suites: [String]
        public var signedBy: String?
        public var architectures: [String]?
        public var trusted: String?
        /// `FILE:LINE` of the line or paragraph.
        public var place: String
    }

    /// deb822 text for `suite` with `components`, derived from the host's apt configuration
    /// (`sources.list`, `sources.list.d/*.list` and `*.sources`). A line or paragraph apt would
    /// read but this cannot use is an error naming its file and line.
    public static func fromHost(suite: String, components: [String], root: String = "/etc/apt") throws -> String {
        var sources: [Source] = []
        let directory = root + "/sources.list.d"
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).sorted()
        for name in names where name.hasSuffix(".sources") {
            let path = directory + "/" + name
            sources += try parseDeb822(try read(path), file: path)
        }
        for path in [root + "/sources.list"] + names.filter({ $0.hasSuffix(".list") }).map({ directory + "/" + $0 }) {
            guard FileManager.default.fileExists(atPath: path) else { continue }
            sources += try parseOneLine(try read(path), file: path)
        }
        let suites = [suite, "\(suite)-updates", "\(suite)-security"]
        var out: [String] = []
        for source in sources where source.types.contains("deb") {
            let wanted = source.suites.filter { suites.contains($0) }
            guard !wanted.isEmpty else { continue }
            var block = "Types: deb\nURIs: \(source.uris.joined(separator: " "))\nSuites: \(wanted.joined(separator: " "))\n"
            block += "Components: \(components.joined(separator: " "))\n"
            if let architectures = source.architectures { block += "Architectures: \(architectures.joined(separator: " "))\n" }
            if let trusted = source.trusted { block += "Trusted: \(trusted)\n" }
            if let signedBy = source.signedBy { block += "Signed-By: \(signedBy)\n" }
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

    static func read(_ path: String) throws -> String {
        do {
            return try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw BuildError(stage: "rootfs", "cannot read the apt source file \(path): \(error.localizedDescription)")
        }
    }

    static func problem(_ file: String, _ line: Int, _ message: String) -> BuildError {
        BuildError(
            stage: "rootfs",
            "\(file):\(line): \(message); fix or remove it (apt would not read it either), or set distribution.mirror in the image definition"
        )
    }

    /// deb822 `.sources` paragraphs (sources.list(5)): fields, continuation lines, `#` comments,
    /// `Enabled: no`. Field names are case-insensitive.
    public static func parseDeb822(_ text: String, file: String) throws -> [Source] {
        var result: [Source] = []
        var fields: [String: String] = [:]
        var start = 0
        var lastKey: String?
        func finish() throws {
            defer { fields = [:]; lastKey = nil }
            guard !fields.isEmpty, (fields["enabled"] ?? "yes").lowercased() != "no" else { return }
            let words = { (key: String) -> [String] in (fields[key] ?? "").split(whereSeparator: \.isWhitespace).map(String.init) }
            for key in ["types", "uris", "suites"] where words(key).isEmpty {
                throw problem(file, start, "this paragraph has no \(key == "uris" ? "URIs" : key.capitalized) field")
            }
            result.append(
                Source(
                    types: words("types"), uris: words("uris"), suites: words("suites"), signedBy: fields["signed-by"],
                    architectures: fields["architectures"] == nil ? nil : words("architectures"), trusted: fields["trusted"],
                    place: "\(file):\(start)"
                )
            )
        }
        for (index, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let number = index + 1
            let line = String(raw)
            if line.hasPrefix("#") { continue }
            if line.trimmingCharacters(in: .whitespaces).isEmpty {
                try finish()
                continue
            }
            if line.first == " " || line.first == "\t" {
                guard let key = lastKey else { throw problem(file, number, "a continuation line outside a field") }
                // Kept with its indentation: an inline Signed-By key is a multi-line value.
                fields[key, default: ""] += "\n" + line
                continue
            }
            guard let colon = line.firstIndex(of: ":"), colon != line.startIndex else {
                throw problem(file, number, "\"\(line)\" is not a \"Field: value\" line")
            }
            if fields.isEmpty { start = number }
            let key = line[..<colon].lowercased()
            fields[key] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            lastKey = key
        }
        try finish()
        return result
    }

    /// One-line `sources.list` entries: `deb [opt=value opt2=value] URI SUITE [COMPONENT...]`.
    public static func parseOneLine(_ text: String, file: String) throws -> [Source] {
        var result: [Source] = []
        for (index, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let number = index + 1
            // apt ignores everything after a '#'.
            let line = raw.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
            var rest = Substring(line.trimmingCharacters(in: .whitespaces))
            guard !rest.isEmpty else { continue }
            let type = nextWord(&rest)
            guard type == "deb" || type == "deb-src" else {
                throw problem(file, number, "\"\(type)\" is not a source type (deb or deb-src)")
            }
            var options: [String: String] = [:]
            if rest.first == "[" {
                guard let close = rest.firstIndex(of: "]") else { throw problem(file, number, "the options' \"[\" is never closed with \"]\"") }
                for option in rest[rest.index(after: rest.startIndex)..<close].split(whereSeparator: \.isWhitespace) {
                    guard let equals = option.firstIndex(of: "="), equals != option.startIndex else {
                        throw problem(file, number, "option \"\(option)\" is not name=value")
                    }
                    // arch+=/arch-= adjust a default; as a value here they mean the same list.
                    let name = option[..<equals].trimmingCharacters(in: CharacterSet(charactersIn: "+-")).lowercased()
                    options[name] = String(option[option.index(after: equals)...])
                }
                rest = rest[rest.index(after: close)...]
                rest = rest.drop { $0.isWhitespace }
            }
            let uri = nextWord(&rest)
            let suite = nextWord(&rest)
            guard !uri.isEmpty, !suite.isEmpty else { throw problem(file, number, "expected \"\(type) [options] URI SUITE COMPONENT...\"") }
            guard !rest.isEmpty || suite.hasSuffix("/") else {
                throw problem(file, number, "suite \(suite) has no components (only an exact path ending in / may omit them)")
            }
            result.append(
                Source(
                    types: [type], uris: [uri], suites: [suite], signedBy: options["signed-by"],
                    architectures: options["arch"].map { $0.split(separator: ",").map(String.init) }, trusted: options["trusted"],
                    place: "\(file):\(number)"
                )
            )
        }
        return result
    }

    private static func nextWord(_ text: inout Substring) -> String {
        text = text.drop { $0.isWhitespace }
        let word = text.prefix { !$0.isWhitespace }
        text = text[word.endIndex...].drop { $0.isWhitespace }
        return String(word)
    }
}
