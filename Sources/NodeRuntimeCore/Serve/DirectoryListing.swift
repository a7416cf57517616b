import Foundation
import MicromirrorKit

/// Directory listings for people (HTML naming the sponsor) and for tools (JSON).
public enum DirectoryListing {
    public struct Entry: Sendable, Codable, Equatable {
        public var name: String
        public var type: String  // "file" or "directory"
        public var size: Int64
        public var mtime: Int
    }

    /// The visible entries of `directory`: no dotfiles, no rsync partials, no symlinks leaving the root.
    public static func entries(of directory: String, resolver: MirrorFileResolver) -> [Entry] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        var result: [Entry] = []
        for name in names where !name.hasPrefix(".") && !RequestPath.isRsyncPartial(name) {
            let full = directory + "/" + name
            guard let canonical = realpath(full, nil) else { continue }
            let real = String(cString: canonical)
            free(canonical)
            guard resolver.contains(real) else { continue }
            var info = stat()
            guard stat(real, &info) == 0 else { continue }
            let kind = info.st_mode & S_IFMT
            guard kind == S_IFREG || kind == S_IFDIR else { continue }
            result.append(
                Entry(name: name, type: kind == S_IFDIR ? "directory" : "file", size: kind == S_IFDIR ? 0 : Int64(info.st_size), mtime: Int(info.st_mtim.tv_sec))
            )
        }
        return result.sorted { ($0.type == "directory" ? 0 : 1, $0.name) < ($1.type == "directory" ? 0 : 1, $1.name) }
    }

    public static func json(path: String, entries: [Entry]) -> String {
        struct Listing: Encodable {
            var path: String
            var entries: [Entry]
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: (try? encoder.encode(Listing(path: path, entries: entries))) ?? Data(), as: UTF8.self) + "\n"
    }

    public static func html(path: String, entries: [Entry], sponsor: String) -> String {
        let title = "Index of \(escape(path))"
        var rows = path == "/" ? "" : "<tr><td><a href=\"../\">../</a></td><td></td><td></td></tr>\n"
        for entry in entries {
            let href = percentEncode(entry.name) + (entry.type == "directory" ? "/" : "")
            let label = escape(entry.name) + (entry.type == "directory" ? "/" : "")
            let size = entry.type == "directory" ? "-" : ByteSize.format(entry.size)
            rows += "<tr><td><a href=\"\(href)\">\(label)</a></td><td>\(HTTPDate.format(entry.mtime))</td><td class=\"s\">\(size)</td></tr>\n"
        }
        return """
            <!DOCTYPE html>
            <html><head><meta charset="utf-8"><title>\(title)</title>
            <style>body{font-family:sans-serif;margin:2em}td{padding:0 1em}td.s{text-align:right}</style></head>
            <body><h1>\(title)</h1>
            <table>
            <tr><th>Name</th><th>Last modified</th><th>Size</th></tr>
            \(rows)</table>
            <p>Served by \(escape(sponsor)), a micromirror node hosted by \(escape(sponsor.split(separator: ".").first.map(String.init) ?? sponsor)).
            Problems with this mirror go to the FCIX NOC, not to the hosting network.</p>
            </body></html>

            """
    }

    static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }

    static func percentEncode(_ name: String) -> String {
        var allowed = CharacterSet.urlPathAllowed
        allowed.remove(charactersIn: "/?#;")
        return name.addingPercentEncoding(withAllowedCharacters: allowed) ?? name
    }
}
