import Foundation
import MicromirrorKit

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
