import Foundation

/// Maps safe request paths to files under the mirror root. Symlinks are followed only while the
/// final target stays inside the root; anything outside, and rsync's partial files, do not exist.
public struct MirrorFileResolver: Sendable {
    /// The root, canonical (realpath), without a trailing slash.
    public let root: String

    public init(root: String) throws {
        guard let canonical = realpath(root, nil) else {
            throw ServeError("mirror root \(root) does not exist or cannot be read")
        }
        defer { free(canonical) }
        self.root = String(cString: canonical)
    }

    public enum Resolved: Sendable, Equatable {
        case file(path: String)
        case directory(path: String)
        case notFound
    }

    public func resolve(_ path: RequestPath) -> Resolved {
        if path.components.contains(where: RequestPath.isRsyncPartial) { return .notFound }
        let joined = path.components.isEmpty ? root : root + "/" + path.components.joined(separator: "/")
        guard let canonical = realpath(joined, nil) else { return .notFound }
        defer { free(canonical) }
        let real = String(cString: canonical)
        guard real == root || real.hasPrefix(root == "/" ? "/" : root + "/") else { return .notFound }
        var info = stat()
        guard stat(real, &info) == 0 else { return .notFound }
        switch info.st_mode & S_IFMT {
        case S_IFREG: return .file(path: real)
        case S_IFDIR: return .directory(path: real)
        default: return .notFound
        }
    }

    /// Whether `path` (already canonical) lies inside the root.
    public func contains(_ path: String) -> Bool { path == root || path.hasPrefix(root + "/") }
}

/// The server could not start or serve, and why.
public struct ServeError: Error, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
