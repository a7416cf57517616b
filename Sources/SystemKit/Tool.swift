import Foundation
import Logging
import Subprocess
import SystemPackage

/// An external program the build or the node needs, with the Debian package that ships it.
public struct Tool: Sendable, Hashable, CustomStringConvertible {
    /// Executable name, e.g. `mkfs.erofs`.
    public var name: String
    /// Debian package to install when it is missing, e.g. `erofs-utils`.
    public var package: String

    public init(_ name: String, package: String) {
        self.name = name
        self.package = package
    }

    public var description: String { name }

    /// The absolute path of the tool, searching `PATH` and the sbin directories root tools live in
    /// (a name that is already absolute, like `/usr/lib/systemd/systemd-bless-boot`, is used as it is).
    public func locate() -> String? {
        if name.hasPrefix("/") { return FileManager.default.isExecutableFile(atPath: name) ? name : nil }
        let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
        let directories = path.split(separator: ":").map(String.init) + ["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"]
        for directory in directories where !directory.isEmpty {
            let candidate = directory + "/" + name
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }
}
