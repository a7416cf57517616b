import Foundation
import MicromirrorKit

/// A file mm-firstboot writes: path (absolute on the node), content, mode.
public struct RenderedFile: Sendable, Equatable {
    public var path: String
    public var content: String
    public var mode: Int32

    public init(path: String, content: String, mode: Int32 = 0o644) {
        self.path = path
        self.content = content
        self.mode = mode
    }
}

/// systemd-networkd files for the uplink: a `.link` that names the NIC `wan0`, and a `.network`
/// with the static addresses, default routes, resolvers and MTU. No DHCP, no router advertisements:
/// the sponsor gave static addresses, and an RA from a misconfigured router must not move the node.
public enum NetworkFiles {
    public static let interfaceName = "wan0"
    public static let directory = "/run/systemd/network"

    public static func render(_ config: NodeConfig, mac: String) -> [RenderedFile] {
        let link = """
            # Written by mm-firstboot from the node file; regenerated every boot.
            [Match]
            MACAddress=\(mac)

            [Link]
            Name=\(interfaceName)
            MTUBytes=\(config.mtu)

            """
        var network = """
            # Written by mm-firstboot from the node file; regenerated every boot.
            [Match]
            Name=\(interfaceName)

            [Link]
            MTUBytes=\(config.mtu)
            RequiredForOnline=yes

            [Network]
            DHCP=no
            IPv6AcceptRA=no
            LinkLocalAddressing=\(config.ipv6 == nil ? "no" : "ipv6")
            # Neither answer nor send name lookups by multicast on the sponsor's network.
            LLMNR=no
            MulticastDNS=no

            """
        for family in [config.ipv4, config.ipv6].compactMap({ $0 }) {
            network += "Address=\(family.cidr)\n"
        }
        for server in config.dns { network += "DNS=\(server)\n" }
        for family in [config.ipv4, config.ipv6].compactMap({ $0 }) {
            // A [Route] with GatewayOnLink covers a gateway outside the prefix on some ISPs' /31s too.
            network += "\n[Route]\nGateway=\(family.gateway)\nGatewayOnLink=yes\n"
        }
        return [
            RenderedFile(path: "\(directory)/10-micromirror-wan.link", content: link),
            RenderedFile(path: "\(directory)/10-micromirror-wan.network", content: network),
        ]
    }
}

/// The nftables ruleset: DSCP CS1 on all egress (unless the node opted out) and an input policy
/// that admits ICMP and the ports something on the node listens on (ssh, http) and drops the rest.
public enum FirewallRuleset {
    public static let table = "micromirror"
    /// sshd and mm-node's HTTP server; open 443 or 873 only once something serves them.
    public static let openPorts = [22, 80]

    public static func render(_ config: NodeConfig) -> String {
        var text = """
            #!/usr/sbin/nft -f
            # Written by mm-firstboot from the node file; loaded every boot.
            table inet \(table)
            delete table inet \(table)
            table inet \(table) {
                chain input {
                    type filter hook input priority filter; policy drop;
                    iif "lo" accept
                    ct state established,related accept
                    ct state invalid drop
                    meta l4proto 1 accept comment "icmp (numeric: no /etc/protocols needed)"
                    meta l4proto 58 accept comment "ipv6-icmp"
                    tcp dport { \(openPorts.map(String.init).joined(separator: ", ")) } ct state new accept
                    counter comment "dropped"
                }

                chain forward {
                    type filter hook forward priority filter; policy drop;
                }

            """
        if config.dscp == .cs1 {
            text += """

                    # Scavenger class: the host network may deprioritise everything this node sends.
                    chain postrouting {
                        type filter hook postrouting priority mangle; policy accept;
                        meta nfproto ipv4 ip dscp set cs1
                        meta nfproto ipv6 ip6 dscp set cs1
                    }

                """
        }
        text += "}\n"
        return text
    }
}
