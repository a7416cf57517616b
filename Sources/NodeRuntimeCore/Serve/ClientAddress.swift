import Foundation
import NIOCore

/// A client's address as the access log writes it and as the connection limit counts it.
///
/// On a dual-stack `[::]` socket IPv4 clients arrive as IPv4-mapped IPv6 (`::ffff:198.51.100.1`):
/// they are written, and counted, as the IPv4 address they are. An IPv6 client is counted by its
/// network (the /64 by default): one host there holds a whole /64 and can pick a fresh address
/// per connection.
struct ClientAddress: Equatable {
    /// What the log shows: `198.51.100.1`, `2001:db8::1`, `-` when unknown.
    var text: String
    /// What the connection limit counts: the IPv4 address, or the IPv6 network (`2001:db8::/64`).
    var limitKey: String

    init(text: String, limitKey: String) {
        self.text = text
        self.limitKey = limitKey
    }

    init(_ address: SocketAddress?, ipv6PrefixLength: Int) {
        switch address {
        case .v4(let v4):
            text = Self.format(v4.address.sin_addr)
            limitKey = text
        case .v6(let v6):
            var bytes = withUnsafeBytes(of: v6.address.sin6_addr) { Array($0) }
            if bytes[0..<10].allSatisfy({ $0 == 0 }), bytes[10] == 0xff, bytes[11] == 0xff {
                text = "\(bytes[12]).\(bytes[13]).\(bytes[14]).\(bytes[15])"
                limitKey = text
                return
            }
            text = Self.format(bytes)
            let prefix = max(0, min(128, ipv6PrefixLength))
            for index in 0..<16 {
                let keep = max(0, min(8, prefix - index * 8))
                bytes[index] &= keep == 8 ? 0xff : UInt8(truncatingIfNeeded: 0xff << (8 - keep))
            }
            limitKey = Self.format(bytes) + "/\(prefix)"
        default:
            text = address?.ipAddress ?? "-"
            limitKey = text
        }
    }

    private static func format(_ address: in_addr) -> String {
        var address = address
        var out = [CChar](repeating: 0, count: Int(INET_ADDRSTRLEN))
        inet_ntop(AF_INET, &address, &out, socklen_t(out.count))
        return String(cString: out)
    }

    private static func format(_ bytes: [UInt8]) -> String {
        var out = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        bytes.withUnsafeBytes { _ = inet_ntop(AF_INET6, $0.baseAddress, &out, socklen_t(out.count)) }
        return String(cString: out)
    }
}
