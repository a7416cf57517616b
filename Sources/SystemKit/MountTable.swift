import Foundation

/// The kernel's table of mounts (`/proc/self/mounts`).
public struct MountTable: Sendable {
    /// Mount points, unescaped (the kernel writes a space in a path as `\040`).
    public var mountPoints: [String]

    public init(text: String) {
        mountPoints = text.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: " ")
            return fields.count > 1 ? Self.unescape(String(fields[1])) : nil
        }
    }

    /// The running system's table; empty when it cannot be read.
    public static func current(path: String = "/proc/self/mounts") -> MountTable {
        MountTable(text: (try? String(contentsOfFile: path, encoding: .utf8)) ?? "")
    }

    /// Whether a filesystem is mounted exactly at `path`.
    public func isMountPoint(_ path: String) -> Bool {
        let wanted = path.count > 1 && path.hasSuffix("/") ? String(path.dropLast()) : path
        return mountPoints.contains(wanted)
    }

    static func unescape(_ field: String) -> String {
        guard field.contains("\\") else { return field }
        var bytes: [UInt8] = []
        var utf8 = Array(field.utf8)[...]
        while let byte = utf8.popFirst() {
            if byte == UInt8(ascii: "\\"), utf8.count >= 3, let value = UInt8(String(decoding: utf8.prefix(3), as: UTF8.self), radix: 8) {
                bytes.append(value)
                utf8 = utf8.dropFirst(3)
            } else {
                bytes.append(byte)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
