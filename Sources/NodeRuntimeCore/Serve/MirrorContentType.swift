import Foundation

/// Content types and caching rules for what mirrors serve.
///
/// Both run for every request, so they compare ASCII-lowercased bytes of the name (no Unicode-aware
/// `hasSuffix`, no lowercased copies on the heap).
public enum MirrorContentType {
    /// Extension (lowercased, without the dot) to MIME type. Package payloads and images are opaque bytes.
    static let byExtension: [(String, String)] = [
        ("html", "text/html; charset=utf-8"), ("htm", "text/html; charset=utf-8"),
        ("xml", "application/xml"), ("json", "application/json"), ("css", "text/css"), ("js", "text/javascript"),
        ("txt", "text/plain; charset=utf-8"), ("md", "text/plain; charset=utf-8"), ("asc", "text/plain; charset=utf-8"),
        ("png", "image/png"), ("svg", "image/svg+xml"), ("jpg", "image/jpeg"), ("gif", "image/gif"), ("ico", "image/x-icon"),
        ("gz", "application/gzip"), ("xz", "application/x-xz"), ("zst", "application/zstd"), ("bz2", "application/x-bzip2"),
    ]
    /// Names without an extension that are text.
    static let plainNames = [
        "release", "inrelease", "packages", "sources", "sha256sums", "md5sums", "sha1sums", "sha512sums", "checksum", "lastsync", "timestamp",
    ]

    /// The MIME type for a file name.
    public static func type(for name: String) -> String {
        withLowercased(name) { name in
            // pacman packages end in .pkg.tar.zst/.xz: opaque, not "zstd".
            if name.count > 8, name.contains(".pkg.tar") { return "application/octet-stream" }
            guard let dot = name.lastIndex(of: UInt8(ascii: ".")) else {
                return plainNames.contains { name.equals($0) } ? "text/plain; charset=utf-8" : "application/octet-stream"
            }
            let ext = name.suffix(from: dot + 1)
            return byExtension.first { ext.equals($0.0) }?.1 ?? "application/octet-stream"
        }
    }

    /// Repository metadata changes in place on every sync: clients must revalidate it.
    public static func isMetadata(_ path: [String]) -> Bool {
        guard let last = path.last else { return false }
        let parents = path.dropLast()
        if parents.contains("repodata") { return true }
        if parents.contains("project"), parents.contains("trace") { return true }
        return withLowercased(last) { name in
            if name.equals("release") || name.equals("inrelease") || name.equals("release.gpg") { return true }
            let base = name.hasSuffix(".sig") || name.hasSuffix(".asc") || name.hasSuffix(".gpg") ? name.dropLast(4) : name
            if base.equals("release") || base.equals("inrelease") { return true }
            if base.hasPrefix("packages") || base.hasPrefix("sources") || base.hasPrefix("contents-") || base.hasPrefix("translation-") { return true }
            for suffix in metadataSuffixes where base.hasSuffix(suffix) { return true }
            return metadataNames.contains { base.equals($0) }
        }
    }

    static let metadataSuffixes = [
        ".db", ".db.tar.gz", ".files", ".files.tar.gz", ".xml", ".xml.gz", ".xml.zst", ".xml.xz", ".sqlite", ".sqlite.bz2", ".sqlite.gz",
        ".sqlite.xz", ".sqlite.zst",
    ]
    static let metadataNames = ["sha256sums", "md5sums", "sha1sums", "sha512sums", "checksum", "lastsync", "timestamp", "treeinfo", ".treeinfo", "trace"]

    /// The Cache-Control value for a path.
    public static func cacheControl(for path: [String]) -> String {
        isMetadata(path) ? "max-age=60, must-revalidate" : "public, max-age=86400"
    }

    /// Runs `body` on the ASCII-lowercased UTF-8 bytes of `name`, on the stack.
    private static func withLowercased<T>(_ name: String, _ body: (LowercasedName) -> T) -> T {
        var name = name
        return name.withUTF8 { source in
            withUnsafeTemporaryAllocation(of: UInt8.self, capacity: source.count) { lowered in
                for (index, byte) in source.enumerated() {
                    lowered[index] = byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z") ? byte | 0x20 : byte
                }
                return body(LowercasedName(bytes: UnsafeBufferPointer(lowered)))
            }
        }
    }
}
