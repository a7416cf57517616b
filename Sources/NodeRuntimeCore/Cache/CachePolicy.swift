import Foundation

/// How a project in cache mode is carried: where its files come from, how much of mm-data the
/// cache may hold, which files never change and which must be asked about again, and what to fetch
/// before anyone asks.
///
/// In a recipe (`recipes/PROJECT.yaml`):
///
/// ```yaml
/// project: fedora
/// mode: cache                     # fill from the origin on demand instead of rsyncing it all
/// origin: https://dl.fedoraproject.org/pub/fedora/
/// cache:
///   budget: 200G                  # disk on mm-data; least recently used files go first
///   metadata-ttl: 30s             # repository metadata is revalidated after this (0: on every use)
///   ttl: 1h                       # files that are neither packages nor metadata
///   origin-timeout: 15s           # no answer (or no data) from the origin for this long: 504 / stale
///   origin-retry: 10s             # after a failure, answer from the cache (or 502/504) this long before asking again
///   immutable: ["*.rpm", "*.iso"] # replaces the default list (packages, images, by-hash files)
///   revalidate: ["repomd.xml"]    # replaces the default list (repository metadata)
///   prefetch:
///     top: 200                    # keep the 200 files asked for most ...
///     days: 7                     # ... in the last 7 days cached and fresh
///     every: 1h
///     bwlimit: 5M                 # bytes per second for prefetching (0: none)
///   prepopulate:                  # fetched ahead of the first request
///     - releases/41/Everything/x86_64/os/repodata/repomd.xml
/// ```
public struct CachePolicy: Sendable, Equatable {
    /// How long a cached file may be served before the origin is asked whether it changed.
    public enum Freshness: Sendable, Equatable {
        /// Never asked again: a package's name changes with its content.
        case immutable
        /// Asked again (a conditional request) once older than this; `.zero`: on every use.
        case revalidate(after: Duration)
    }

    /// The origin's base URL for the project, ending in `/`.
    public var origin: URL
    public var budget: Int64 = 50 << 30
    public var metadataTTL: Duration = .seconds(30)
    public var ttl: Duration = .seconds(3600)
    public var originTimeout: Duration = .seconds(15)
    /// After the origin failed, how long requests are answered from the cache (or 502/504) without
    /// asking it again.
    public var originRetry: Duration = .seconds(10)
    public var immutable = CachePolicy.defaultImmutable
    public var revalidate = CachePolicy.defaultRevalidate
    public var prefetchTop = 100
    public var prefetchDays = 7
    public var prefetchEvery: Duration = .seconds(3600)
    /// Bytes per second for prefetch transfers; nil for no limit.
    public var prefetchRate: Int64? = 5 << 20
    /// Paths below the project fetched ahead of the first request.
    public var prepopulate: [String] = []

    /// Packages and images: a new version is a new name.
    public static let defaultImmutable = [
        "*.rpm", "*.drpm", "*.deb", "*.udeb", "*.ddeb", "*.pkg.tar.*", "*.apk", "*.iso", "*.img", "*.qcow2", "*.snap",
        "*/by-hash/*",
    ]
    /// Repository metadata (dnf, apt, pacman, zypper, installers): same name, new content.
    public static let defaultRevalidate = [
        "repomd.xml", "repomd.xml.*", "InRelease", "Release", "Release.gpg", "Packages", "Packages.*", "Sources", "Sources.*",
        "Contents-*", "Translation-*", "*.db", "*.db.sig", "*.db.tar.*", "*.files", "*.files.sig", "*.files.tar.*", "lastupdate", "lastsync",
        "CHECKSUM", "*CHECKSUM", "SHA256SUMS*", "MD5SUMS*", "*.metalink", "TIME", "timestamp", "*.sha256", "*.asc",
    ]

    public init(origin: URL) {
        self.origin = origin
    }

    /// How long `relative` (a path below the project) stays fresh. Metadata wins over the
    /// immutable list: asking again too often costs a conditional request, trusting a changed
    /// index breaks every client.
    public func freshness(of relative: String) -> Freshness {
        if Self.matches(revalidate, relative) { return .revalidate(after: metadataTTL) }
        if Self.matches(immutable, relative) { return .immutable }
        return .revalidate(after: ttl)
    }

    /// A pattern without `/` is matched against the file's name, one with `/` against the whole
    /// path below the project (`*` then also crosses directories).
    static func matches(_ patterns: [String], _ relative: String) -> Bool {
        let name = relative.utf8.lastIndex(of: UInt8(ascii: "/")).map { String(relative[relative.index(after: $0)...]) } ?? relative
        let path = "/" + relative
        for pattern in patterns where fnmatch(pattern, pattern.utf8.contains(UInt8(ascii: "/")) ? path : name, 0) == 0 {
            return true
        }
        return false
    }
}
