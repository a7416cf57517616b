/// Content types and caching rules for what mirrors serve.
public enum MirrorContentType {
    /// The MIME type for a file name.
    public static func type(for name: String) -> String {
        let lower = name.lowercased()
        if lower.hasSuffix(".html") || lower.hasSuffix(".htm") { return "text/html; charset=utf-8" }
        let exact: [String: String] = [
            ".xml": "application/xml", ".json": "application/json", ".css": "text/css", ".js": "text/javascript",
            ".txt": "text/plain; charset=utf-8", ".md": "text/plain; charset=utf-8", ".asc": "text/plain; charset=utf-8",
            ".png": "image/png", ".svg": "image/svg+xml", ".jpg": "image/jpeg", ".gif": "image/gif", ".ico": "image/x-icon",
            ".gz": "application/gzip", ".xz": "application/x-xz", ".zst": "application/zstd", ".bz2": "application/x-bzip2",
        ]
        // Package payloads and images are opaque bytes to every client.
        for suffix in [".rpm", ".deb", ".udeb", ".iso", ".img", ".qcow2", ".raw", ".squashfs", ".efi", ".torrent"] where lower.hasSuffix(suffix) {
            return "application/octet-stream"
        }
        if lower.contains(".pkg.tar") { return "application/octet-stream" }
        for (suffix, type) in exact where lower.hasSuffix(suffix) { return type }
        let plain = ["release", "inrelease", "packages", "sources", "sha256sums", "md5sums", "sha1sums", "sha512sums", "checksum", "lastsync", "timestamp"]
        if plain.contains(lower) { return "text/plain; charset=utf-8" }
        return "application/octet-stream"
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
