import Foundation
import MicromirrorKit
import SystemKit

/// Directory listings for people (HTML naming the sponsor) and for tools (JSON).
public enum DirectoryListing {
    public struct Entry: Sendable, Codable, Equatable {
        public var name: String
        public var type: String  // "file" or "directory"
        public var size: Int64
        public var mtime: Int
    }

    /// The visible entries of the directory `relative` (below the root): no dotfiles, no rsync
    /// partials, nothing that is not public, no symlinks leaving the root. The directory is opened
    /// beneath the root like a file; blocking (readdir and a stat per entry): call it off the
    /// event loops.
    public static func entries(of relative: String, resolver: MirrorFileResolver) throws -> [Entry] {
        let fd = resolver.openBeneath(relative, flags: O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw ServeError("cannot open directory /\(relative) for its listing: \(String(cString: strerror(errno)))") }
        guard let stream = fdopendir(fd) else {
            let code = errno
            close(fd)
            throw ServeError("cannot read directory /\(relative) for its listing: \(String(cString: strerror(code)))")
        }
        defer { closedir(stream) }
        let prefix = relative == "." ? "" : relative + "/"
        var result: [Entry] = []
        while true {
            errno = 0
            guard let record = readdir(stream) else {
                guard errno == 0 else { throw ServeError("cannot read directory /\(relative) for its listing: \(String(cString: strerror(errno)))") }
                break
            }
            let name = withUnsafeBytes(of: record.pointee.d_name) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
            guard !name.hasPrefix("."), !RequestPath.isRsyncPartial(name) else { continue }
            var info = stat()
            if record.pointee.d_type == UInt8(DT_LNK) || record.pointee.d_type == UInt8(DT_UNKNOWN) {
                // A symlink is shown only if it resolves beneath the root (as a request for it would).
                let target = resolver.openBeneath(prefix + name, flags: BeneathOpen.pathOnly | O_CLOEXEC)
                guard target >= 0 else { continue }
                defer { close(target) }
                guard fstat(target, &info) == 0 else { continue }
            } else {
                guard fstatat(fd, name, &info, AT_SYMLINK_NOFOLLOW) == 0 else { continue }
            }
            let kind = info.st_mode & S_IFMT
            guard kind == S_IFREG || kind == S_IFDIR, MirrorFileResolver.isPublic(info) else { continue }
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
