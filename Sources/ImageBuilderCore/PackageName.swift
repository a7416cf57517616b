import MicromirrorKit

/// Debian package names (Policy §5.6.7), optionally with an `:arch` or `=version` suffix.
enum PackageName {
    static func isValid(_ name: String) -> Bool {
        let base = name.split(separator: "=", maxSplits: 1).first.map(String.init) ?? name
        let bare = base.split(separator: ":", maxSplits: 1).first.map(String.init) ?? base
        guard bare.count >= 2, let first = bare.first, first.isLowercase || first.isNumber else { return false }
        return bare.allSatisfy { ($0.isLowercase && $0.isASCII) || $0.isNumber || "+-.".contains($0) }
    }
}
