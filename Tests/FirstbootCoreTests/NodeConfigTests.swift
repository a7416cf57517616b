import Foundation
import FirstbootCore
import MicromirrorKit
import MicromirrorTestSupport
import Testing

let packageRoot: String = {
    var url = URL(fileURLWithPath: #filePath)
    for _ in 0..<3 { url.deleteLastPathComponent() }
    return url.path
}()

let exampleText = try! String(contentsOfFile: packageRoot + "/nodes/example.yaml", encoding: .utf8)
let sshKey = exampleText.split(separator: "\n").first { $0.contains("ssh-ed25519") }!.trimmingCharacters(in: .whitespaces).dropFirst(2)

/// A minimal valid node file with `replacing` applied.
func node(_ edits: [(String, String)] = []) -> String {
    var text = """
        sponsor:
          name: example-isp
        network:
          ipv4:
            address: 192.0.2.10/24
            gateway: 192.0.2.1
          ipv6:
            address: 2001:db8:10::10/64
            gateway: 2001:db8:10::1
          dns: [192.0.2.53, 2001:db8:10::53]
        ssh-keys:
          - \(sshKey)
        projects: [ubuntu-releases, almalinux]
        upstream: rsync://mirror.fcix.net/

        """
    for (old, new) in edits { text = text.replacingOccurrences(of: old, with: new) }
    return text
}

@Suite("Node file validation")
struct NodeConfigTests {
    @Test("the example in the repo is valid and complete")
    func example() throws {
        let config = try NodeConfig.load(path: packageRoot + "/nodes/example.yaml")
        #expect(config.hostname == "example-isp.mm.fcix.net")
        #expect(config.interface == .mac("52:54:00:12:34:56"))
        #expect(config.ipv4?.cidr == "192.0.2.10/24")
        #expect(config.ipv6?.gateway.description == "2001:db8:10::1")
        #expect(config.dscp == .cs1)
        #expect(config.projects == ["ubuntu-releases", "almalinux", "archlinux"])
        #expect(config.mqtt?.broker == "mqtts://mqtt.fcix.net:8883")
        #expect(config.update.window.description == "Tue 02:00-04:00")
    }

    @Test("defaults: first wired NIC, DSCP cs1, MTU 1500, stable channel")
    func defaults() throws {
        let config = try NodeConfig.parse(node(), file: "n.yaml")
        #expect(config.interface == .firstWired)
        #expect(config.dscp == .cs1)
        #expect(config.mtu == 1500)
        #expect(config.update.channel == "stable")
        #expect(config.update.window == .anyTime)
    }

    @Test("update: a channel by name is looked up on the upstream, a URL is used as it is; 'any' window; check interval")
    func updateSection() throws {
        let named = try NodeConfig.parse(node(), file: "n.yaml")
        #expect(named.update.indexURL(upstream: named.upstream) == "http://mirror.fcix.net/micromirror/channels/stable.json")
        #expect(named.update.channelName == "stable")
        #expect(named.update.checkInterval == .seconds(6 * 3600))
        let url = try NodeConfig.parse(
            node([("upstream:", "update: {channel: \"https://noc.example/ch/beta.json\", maintenance-window: any, check-interval: 30m}\nupstream:")]), file: "n.yaml"
        )
        #expect(url.update.indexURL(upstream: url.upstream) == "https://noc.example/ch/beta.json")
        #expect(url.update.channelName == "beta", "announcements for a channel given by URL go to micromirror/update/beta")
        #expect(url.update.window == .anyTime && url.update.checkInterval == .seconds(1800))
        let window = try #require(MaintenanceWindow("Tue 23:00-01:00"))
        let utc = ISO8601DateFormatter()
        #expect(window.contains(utc.date(from: "2026-12-01T23:30:00Z")!), "Tuesday 23:30")
        #expect(window.contains(utc.date(from: "2026-12-02T00:30:00Z")!), "past midnight into Wednesday")
        #expect(!window.contains(utc.date(from: "2026-12-02T23:30:00Z")!), "Wednesday 23:30")
        #expect(!window.contains(utc.date(from: "2026-12-01T22:59:00Z")!))
    }

    @Test("IPv4-only and IPv6-only nodes are accepted")
    func singleFamily() throws {
        let v4 = try NodeConfig.parse(
            node([("  ipv6:\n    address: 2001:db8:10::10/64\n    gateway: 2001:db8:10::1\n", ""), ("[192.0.2.53, 2001:db8:10::53]", "[192.0.2.53]")]),
            file: "v4.yaml"
        )
        #expect(v4.ipv6 == nil && v4.ipv4 != nil)
        let v6 = try NodeConfig.parse(
            node([("  ipv4:\n    address: 192.0.2.10/24\n    gateway: 192.0.2.1\n", ""), ("[192.0.2.53, 2001:db8:10::53]", "[2001:db8:10::53]")]),
            file: "v6.yaml"
        )
        #expect(v6.ipv4 == nil && v6.ipv6 != nil)
    }

    @Test("a link-local IPv6 gateway is on-link")
    func linkLocalGateway() throws {
        let config = try NodeConfig.parse(node([("gateway: 2001:db8:10::1", "gateway: fe80::1")]), file: "n.yaml")
        #expect(config.ipv6?.gateway.description == "fe80::1")
    }

    static let badCases: [(String, [(String, String)], String)] = [
        ("missing sponsor", [("sponsor:\n  name: example-isp\n", "")], "n.yaml:1: sponsor: missing (required)"),
        ("sponsor not a DNS label", [("name: example-isp", "name: Example ISP")], "n.yaml:2: sponsor.name: \"Example ISP\" must be a DNS label"),
        ("bad IPv4 address", [("192.0.2.10/24", "192.0.2.300/24")], "n.yaml:5: network.ipv4.address: \"192.0.2.300\" is not an IPv4 address"),
        ("IPv4 prefix out of range", [("192.0.2.10/24", "192.0.2.10/33")], "n.yaml:5: network.ipv4.address: prefix /33 is out of range for IPv4"),
        ("IPv6 prefix out of range", [("2001:db8:10::10/64", "2001:db8:10::10/129")], "n.yaml:8: network.ipv6.address: prefix /129 is out of range for IPv6"),
        ("address without prefix", [("192.0.2.10/24", "192.0.2.10")], "n.yaml:5: network.ipv4.address: expected ADDRESS/PREFIX"),
        ("IPv4 gateway not on-link", [("gateway: 192.0.2.1", "gateway: 198.51.100.1")], "n.yaml:6: network.ipv4.gateway: gateway 198.51.100.1 is not on-link"),
        ("IPv6 gateway not on-link", [("gateway: 2001:db8:10::1", "gateway: 2001:db8:99::1")], "n.yaml:9: network.ipv6.gateway: gateway 2001:db8:99::1 is not on-link"),
        ("IPv6 address in the ipv4 block", [("address: 192.0.2.10/24", "address: 2001:db8::5/64")], "network.ipv4.address: \"2001:db8::5\" is not an IPv4 address"),
        ("gateway of the wrong family", [("gateway: 192.0.2.1", "gateway: 2001:db8::1")], "n.yaml:6: network.ipv4.gateway: \"2001:db8::1\" is not an IPv4 address"),
        ("gateway equals the address", [("gateway: 192.0.2.1", "gateway: 192.0.2.10")], "network.ipv4.gateway: the gateway cannot be the node's own address"),
        ("loopback address", [("192.0.2.10/24", "127.0.0.5/8"), ("gateway: 192.0.2.1", "gateway: 127.0.0.1")], "127.0.0.5 cannot be a host's static address"),
        ("no address family", [("  ipv4:\n    address: 192.0.2.10/24\n    gateway: 192.0.2.1\n  ipv6:\n    address: 2001:db8:10::10/64\n    gateway: 2001:db8:10::1\n", "")], "network: needs ipv4, ipv6 or both"),
        ("missing gateway", [("    gateway: 192.0.2.1\n", "")], "network.ipv4.gateway: missing (required)"),
        ("bad DNS server", [("[192.0.2.53, 2001:db8:10::53]", "[192.0.2.53, dns.example]")], "n.yaml:10: network.dns[1]: \"dns.example\" is not an IP address"),
        ("DNS listed twice", [("[192.0.2.53, 2001:db8:10::53]", "[192.0.2.53, 192.0.2.53]")], "network.dns[1]: 192.0.2.53 is listed twice"),
        ("missing DNS", [("  dns: [192.0.2.53, 2001:db8:10::53]\n", "")], "network.dns: missing (required)"),
        ("bad MTU", [("network:\n", "network:\n  mtu: 100\n")], "n.yaml:4: network.mtu: 100 is out of range"),
        ("bad MAC", [("network:\n", "network:\n  interface: {mac: \"52:54:00:zz:34:56\"}\n")], "network.interface.mac: \"52:54:00:zz:34:56\" is not a MAC address"),
        ("bad DSCP", [("network:\n", "network:\n  dscp: ef\n")], "n.yaml:4: network.dscp: expected cs1 or none, found \"ef\""),
        ("unknown key at the top", [("upstream:", "colour: blue\nupstream:")], "n.yaml:14: colour: unknown key"),
        ("unknown key in network", [("network:\n", "network:\n  vlan: 7\n")], "n.yaml:4: network.vlan: unknown key"),
        ("duplicate project", [("[ubuntu-releases, almalinux]", "[ubuntu-releases, almalinux, ubuntu-releases]")], "projects[2]: duplicate project \"ubuntu-releases\""),
        ("bad project name", [("[ubuntu-releases, almalinux]", "[Ubuntu_Releases]")], "projects[0]: \"Ubuntu_Releases\" is not a project name"),
        ("missing projects", [("projects: [ubuntu-releases, almalinux]\n", "")], "projects: missing (required)"),
        ("upstream not rsync", [("rsync://mirror.fcix.net/", "https://mirror.fcix.net/")], "upstream: must be an rsync:// URL"),
        ("not an SSH key", [("  - \(sshKey)", "  - hunter2")], "ssh-keys[0]: not an OpenSSH public key line"),
        ("no SSH keys", [("ssh-keys:\n  - \(sshKey)", "ssh-keys: []")], "ssh-keys: needs at least one NOC key"),
        ("bad MQTT broker", [("upstream:", "mqtt: {broker: \"tcp://x\"}\nupstream:")], "mqtt.broker: must be an mqtt:// or mqtts:// URL"),
        ("telemetry not MQTT", [("upstream:", "telemetry: {target: \"https://watchtower.example/push\"}\nupstream:")], "telemetry.target: must be the watchtower's MQTT broker, an mqtt:// or mqtts:// URL"),
        ("bad maintenance window", [("upstream:", "update: {maintenance-window: \"whenever\"}\nupstream:")], "update.maintenance-window: expected \"any\" or a window like"),
        ("bad channel URL", [("upstream:", "update: {channel: \"https://noc.example/stable\"}\nupstream:")], "update.channel: expected a channel name or an http(s)://HOST/…/NAME.json URL"),
        ("bad check interval", [("upstream:", "update: {check-interval: \"10s\"}\nupstream:")], "update.check-interval: expected a duration of a minute or more"),
        ("IPv4 DNS on an IPv6-only node", [("  ipv4:\n    address: 192.0.2.10/24\n    gateway: 192.0.2.1\n", "")], "network.dns[0]: an IPv4 resolver on an IPv6-only node cannot be reached"),
        ("wrong type for network", [("network:\n  ipv4:", "network: yes\nunused:\n  ipv4:")], "n.yaml:3: network: expected a mapping"),
    ]

    @Test("bad node files are refused with the line, field and reason", arguments: badCases.map { ($0.0, $0.1, $0.2) })
    func bad(name: String, edits: [(String, String)], expected: String) {
        let text = node(edits)
        #expect(text != node(), "case \(name) did not change the file")
        #expect {
            try NodeConfig.parse(text, file: "n.yaml")
        } throws: { error in
            let message = "\(error)"
            let ok = message.contains(expected)
            if !ok { Issue.record("\(name): expected \"\(expected)\" in:\n\(message)") }
            return ok
        }
    }

    @Test("every problem is reported at once")
    func allAtOnce() {
        let text = node([("192.0.2.10/24", "192.0.2.10/40"), ("rsync://mirror.fcix.net/", "ftp://x"), ("[ubuntu-releases, almalinux]", "[a, a]")])
        #expect {
            try NodeConfig.parse(text, file: "n.yaml")
        } throws: { error in
            guard let error = error as? ConfigError else { return false }
            return error.problems.count == 3
        }
    }
}

@Suite("Rendered networkd and nftables files")
struct RenderTests {
    @Test("the .link names the NIC wan0 by MAC; the .network has static addresses, routes, DNS, RA off")
    func networkd() throws {
        let config = try NodeConfig.parse(node([("network:\n", "network:\n  mtu: 9000\n")]), file: "n.yaml")
        let files = NetworkFiles.render(config, mac: "52:54:00:aa:bb:cc")
        #expect(files.map(\.path) == ["/run/systemd/network/10-micromirror-wan.link", "/run/systemd/network/10-micromirror-wan.network"])
        #expect(files[0].content.contains("[Match]\nMACAddress=52:54:00:aa:bb:cc\n\n[Link]\nName=wan0\nMTUBytes=9000\n"))
        let network = files[1].content
        for line in [
            "Name=wan0", "DHCP=no", "IPv6AcceptRA=no", "Address=192.0.2.10/24", "Address=2001:db8:10::10/64", "DNS=192.0.2.53",
            "DNS=2001:db8:10::53", "Gateway=192.0.2.1", "Gateway=2001:db8:10::1", "MTUBytes=9000",
        ] {
            #expect(network.contains(line + "\n"), "missing \(line)")
        }
    }

    @Test("an IPv4-only node turns off IPv6 link-local addressing")
    func v4only() throws {
        let config = try NodeConfig.parse(
            node([("  ipv6:\n    address: 2001:db8:10::10/64\n    gateway: 2001:db8:10::1\n", ""), ("[192.0.2.53, 2001:db8:10::53]", "[192.0.2.53]")]),
            file: "n.yaml"
        )
        let network = NetworkFiles.render(config, mac: "52:54:00:aa:bb:cc")[1].content
        #expect(network.contains("LinkLocalAddressing=no"))
        #expect(!network.contains("2001:db8"))
    }

    @Test("nftables: CS1 on egress for both families unless opted out; input admits only the mirror's services")
    func nftables() throws {
        let marked = FirewallRuleset.render(try NodeConfig.parse(node(), file: "n.yaml"))
        #expect(marked.contains("ip dscp set cs1"))
        #expect(marked.contains("ip6 dscp set cs1"))
        #expect(marked.contains("hook postrouting"))
        #expect(marked.contains("tcp dport { 22, 80, 873 }"))
        #expect(marked.contains("policy drop"))
        let optedOut = FirewallRuleset.render(try NodeConfig.parse(node([("network:\n", "network:\n  dscp: none\n")]), file: "n.yaml"))
        #expect(!optedOut.contains("dscp set"))
        #expect(optedOut.contains("tcp dport { 22, 80, 873 }"))
    }

    @Test("nft itself accepts both rulesets")
    func nftChecks() async throws {
        for edits in [[], [("network:\n", "network:\n  dscp: none\n")]] as [[(String, String)]] {
            let path = NSTemporaryDirectory() + "rules-\(UUID().uuidString).nft"
            try FirewallRuleset.render(try NodeConfig.parse(node(edits), file: "n.yaml")).write(toFile: path, atomically: true, encoding: .utf8)
            let result = try await Shell.run("nft", ["-c", "-f", path])
            #expect(result.status == 0, "nft -c: \(result.output)")
        }
    }

    @Test("the console report names the node, its addresses, its slot and any problem")
    func console() {
        let ok = ConsoleReport.render(hostname: "x.mm.fcix.net", addresses: ["192.0.2.10/24"], slot: "a", problems: [])
        #expect(ok.contains("micromirror x.mm.fcix.net  (slot a)") && ok.contains("address 192.0.2.10/24") && ok.contains("node file applied"))
        let bad = ConsoleReport.render(hostname: "x", addresses: [], slot: "b", problems: ["n.yaml:3: network: wrong"])
        #expect(bad.contains("NODE FILE PROBLEMS") && bad.contains("n.yaml:3: network: wrong"))
    }
}

enum Shell {
    struct Result {
        var status: Int32
        var output: String
    }

    static func run(_ tool: String, _ arguments: [String]) async throws -> Result {
        let result = try await ToolRun.run(tool, arguments)
        return Result(status: result.status, output: result.combined)
    }
}
