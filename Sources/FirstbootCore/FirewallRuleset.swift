import Foundation
import MicromirrorKit

/// The nftables ruleset: DSCP CS1 on all egress (unless the node opted out) and an input policy
/// that admits ICMP and the ports something on the node listens on (ssh, http, rsync) and drops the rest.
public enum FirewallRuleset {
    public static let table = "micromirror"
    /// sshd, mm-node's HTTP server and the rsync daemon for downstream mirrors; open 443 only
    /// once something serves it.
    public static let openPorts = [22, 80, 873]

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
