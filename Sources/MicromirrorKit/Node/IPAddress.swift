import Foundation

/// An IPv4 or IPv6 address, parsed with `inet_pton`.
public enum IPAddress: Sendable, Hashable, CustomStringConvertible {
    case v4([UInt8])
    case v6([UInt8])

    /// Parses dotted-quad IPv4 or RFC 4291 IPv6 text; nil if it is neither.
    public init?(_ text: String) {
        if text.contains(":") {
            var raw = in6_addr()
            guard inet_pton(AF_INET6, text, &raw) == 1 else { return nil }
            self = .v6(withUnsafeBytes(of: raw) { Array($0) })
        } else {
            var raw = in_addr()
            guard inet_pton(AF_INET, text, &raw) == 1 else { return nil }
            self = .v4(withUnsafeBytes(of: raw) { Array($0) })
        }
    }

    public var bytes: [UInt8] {
        switch self {
        case .v4(let b), .v6(let b): return b
        }
    }

    public var isIPv4: Bool { if case .v4 = self { return true } else { return false } }

    /// The longest prefix this family allows: 32 or 128.
    public var maxPrefix: Int { isIPv4 ? 32 : 128 }

    /// Canonical text (`inet_ntop`).
    public var description: String {
        var buffer = [CChar](repeating: 0, count: 64)
        switch self {
        case .v4(let b):
            var raw = in_addr()
            withUnsafeMutableBytes(of: &raw) { $0.copyBytes(from: b) }
            inet_ntop(AF_INET, &raw, &buffer, socklen_t(buffer.count))
        case .v6(let b):
            var raw = in6_addr()
            withUnsafeMutableBytes(of: &raw) { $0.copyBytes(from: b) }
            inet_ntop(AF_INET6, &raw, &buffer, socklen_t(buffer.count))
        }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Whether the first `prefix` bits equal those of `other` (same family).
    public func sharesPrefix(_ prefix: Int, with other: IPAddress) -> Bool {
        guard isIPv4 == other.isIPv4 else { return false }
        let a = bytes, b = other.bytes
        var bits = prefix
        var index = 0
        while bits > 0 {
            let mask: UInt8 = bits >= 8 ? 0xff : UInt8(truncatingIfNeeded: 0xff << (8 - bits))
            if a[index] & mask != b[index] & mask { return false }
            bits -= 8
            index += 1
        }
        return true
    }

    /// fe80::/10.
    public var isIPv6LinkLocal: Bool { !isIPv4 && bytes[0] == 0xfe && bytes[1] & 0xc0 == 0x80 }
    public var isUnspecified: Bool { bytes.allSatisfy { $0 == 0 } }
    public var isMulticast: Bool { isIPv4 ? bytes[0] >= 224 && bytes[0] <= 239 : bytes[0] == 0xff }
    public var isLoopback: Bool { isIPv4 ? bytes[0] == 127 : bytes == [UInt8](repeating: 0, count: 15) + [1] }
}
