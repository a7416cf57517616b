import Foundation

/// What the boot entry told the kernel about the slot: `mm.slot=a|b` and `root=PARTLABEL=mm-root-X`.
public struct KernelCommandLine: Sendable, Equatable {
    /// `a` or `b`; "unknown" when the entry does not say (booted by hand).
    public var slot: String = "unknown"
    public var rootLabel: String = "unknown"
    public var words: [String] = []

    public init(_ text: String) {
        words = text.split(whereSeparator: { $0 == " " || $0 == "\n" }).map(String.init)
        for word in words {
            if word.hasPrefix("mm.slot=") { slot = String(word.dropFirst("mm.slot=".count)) }
            if word.hasPrefix("root=PARTLABEL=") { rootLabel = String(word.dropFirst("root=PARTLABEL=".count)) }
        }
    }

    /// The running kernel's (`/proc/cmdline`); empty when it cannot be read.
    public static func read(path: String = "/proc/cmdline") -> KernelCommandLine {
        KernelCommandLine((try? String(contentsOfFile: path, encoding: .utf8)) ?? "")
    }
}
