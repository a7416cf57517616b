/// Content types and caching rules for what mirrors serve.
public enum MirrorContentType {
    /// Extension (lowercased, without the dot) to MIME type. Package payloads and images are opaque bytes.
    static let byExtension: [String: String] = [
        "html": "text/html; charset=utf-8", "htm": "text/html; charset=utf-8",
        "xml": "application/xml", "json": "application/json", "css": "text/css", "js": "text/javascript",
        "txt": "text/plain; charset=utf-8", "md": "text/plain; charset=utf-8", "asc": "text/plain; charset=utf-8",
        "png": "image/png", "svg": "image/svg+xml", "jpg": "image/jpeg", "gif": "image/gif", "ico": "image/x-icon",
        "gz": "application/gzip", "xz": "application/x-xz", "zst": "application/zstd", "bz2": "application/x-bzip2",
    ]
    static let plainNames: Set<String> = [
        "release", "inrelease", "packages", "sources", "sha256sums", "md5sums", "sha1sums", "sha512sums", "checksum", "lastsync", "timestamp",
    ]

    /// The MIME type for a file name.
    public static func type(for name: String) -> String {
        // pacman packages end in .pkg.tar.zst/.xz: opaque, not "zstd".
        if name.utf8.count > 8, name.utf8.firstRange(of: ".pkg.tar".utf8) != nil { return "application/octet-stream" }
        guard let dot = name.lastIndex(of: ".") else {
            return plainNames.contains(name.lowercased()) ? "text/plain; charset=utf-8" : "application/octet-stream"
        }
        let ext = name[name.index(after: dot)...]
        return byExtension[ext.lowercased()] ?? "application/octet-stream"
    }

    /// Repository metadata changes in place on every sync: clients must revalidate it.
    public static func isMetadata(_ path: [String]) -> Bool {
        guard let name = path.last?.lowercased() else { return false }
        if path.dropLast().contains(where: { $0 == "repodata" }) { return true }
        let base = name.hasSuffix(".sig") || name.hasSuffix(".asc") || name.hasSuffix(".gpg") ? String(name.dropLast(4)) : name
        if ["release", "inrelease", "release.gpg"].contains(name) || ["release", "inrelease"].contains(base) { return true }
        if base.hasPrefix("packages") || base.hasPrefix("sources") || base.hasPrefix("contents-") || base.hasPrefix("translation-") { return true }
        if base.hasSuffix(".db") || base.hasSuffix(".db.tar.gz") || base.hasSuffix(".files") || base.hasSuffix(".files.tar.gz") { return true }
        for suffix in [".xml", ".xml.gz", ".xml.zst", ".xml.xz", ".sqlite", ".sqlite.bz2", ".sqlite.gz", ".sqlite.xz", ".sqlite.zst"] where base.hasSuffix(suffix) {
            return true
        }
        if ["sha256sums", "md5sums", "sha1sums", "sha512sums", "checksum", "lastsync", "timestamp", "treeinfo", ".treeinfo", "trace"].contains(base) { return true }
        return path.dropLast().contains("project") && path.dropLast().contains("trace")
    }

    /// The Cache-Control value for a path.
    public static func cacheControl(for path: [String]) -> String {
        isMetadata(path) ? "max-age=60, must-revalidate" : "public, max-age=86400"
    }
}
