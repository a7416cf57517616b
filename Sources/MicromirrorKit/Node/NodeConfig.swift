import Foundation

/// One node's configuration: the YAML file the NOC writes into `mm-config` when it flashes an SSD.
/// `mm-firstboot` applies it; `mm-node` reads it; `mm-image node check` validates it.
///
/// Validation reports every problem at once, with file, line and field, and a node never applies
/// half of a file: either the whole file validates, or nothing from it is used.
public struct NodeConfig: Sendable, Equatable {
    /// Where on the node the file lives (the `mm-config` partition's mount point).
    public static let defaultPath = NodePaths.standard.nodeFile
    public static let domain = "mm.fcix.net"

    public struct Sponsor: Sendable, Equatable {
        /// Short name, a DNS label: `example-isp` → `example-isp.mm.fcix.net`.
        public var name: String
        public var url: String?
    }

    /// Which NIC is the uplink.
    public enum InterfaceMatch: Sendable, Equatable {
        case mac(String)
        /// The first wired Ethernet NIC (by name order), for nodes flashed without knowing the MAC.
        case firstWired
    }

    /// A static address of one family with its on-link prefix and default gateway.
    public struct StaticAddress: Sendable, Equatable {
        public var address: IPAddress
        public var prefix: Int
        public var gateway: IPAddress
        public var cidr: String { "\(address)/\(prefix)" }
    }

    public enum DSCP: String, Sendable, Equatable {
        case cs1
        case none
        /// The IP header's TOS / traffic-class byte (DSCP << 2).
        public var tos: UInt8? { self == .cs1 ? 0x20 : nil }
    }

    public struct MQTT: Sendable, Equatable {
        public var broker: String
        public var topicPrefix: String
    }

    public struct Update: Sendable, Equatable {
        /// A channel name (its index is looked up on the upstream mirror) or a full
        /// `http(s)://…/NAME.json` URL.
        public var channel: String
        public var window: MaintenanceWindow
        /// How often the channel is polled (jittered by up to a tenth); pushes make it sooner.
        public var checkInterval: Duration = .seconds(6 * 3600)

        /// The URL of the channel's index: `channel` itself when it is a URL, else
        /// `http://UPSTREAM-HOST/micromirror/channels/NAME.json` on the node's upstream.
        public func indexURL(upstream: String) -> String {
            if channel.hasPrefix("http://") || channel.hasPrefix("https://") { return channel }
            let host = URL(string: upstream)?.host ?? upstream
            return "http://\(host)/micromirror/channels/\(channel).json"
        }

        /// The channel's name: `channel` itself, or the index's file name without `.json` when it
        /// is a URL. Releases are announced on `micromirror/update/NAME`.
        public var channelName: String {
            guard channel.hasPrefix("http://") || channel.hasPrefix("https://") else { return channel }
            return ((URL(string: channel)?.lastPathComponent ?? channel) as NSString).deletingPathExtension
        }
    }

    public var sponsor: Sponsor
    public var hostname: String
    public var interface: InterfaceMatch
    public var mtu: Int
    public var ipv4: StaticAddress?
    public var ipv6: StaticAddress?
    public var dns: [IPAddress]
    public var dscp: DSCP
    public var sshKeys: [String]
    public var projects: [String]
    public var upstream: String
    public var mqtt: MQTT?
    /// The NOC watchtower's MQTT broker (`mqtt://` or `mqtts://`), where the node reports itself.
    public var telemetry: String?
    public var update: Update

    /// Loads and validates `path`.
    public static func load(path: String) throws(ConfigError) -> NodeConfig {
        try validate(YAMLConfig.load(path: path))
    }

    /// Loads and validates `path`, returning the exact bytes that were validated (what a last-good
    /// copy must keep: a second read could see a file changed in between).
    public static func loadKeepingBytes(path: String) throws(ConfigError) -> (config: NodeConfig, bytes: [UInt8]) {
        let (text, bytes) = try YAMLConfig.text(path: path)
        return (try parse(text, file: path), bytes)
    }

    /// Parses and validates YAML `text`; `file` names it in errors.
    public static func parse(_ text: String, file: String) throws(ConfigError) -> NodeConfig {
        try validate(YAMLConfig.parse(text, file: file))
    }

    static func validate(_ root: YAMLMapping) throws(ConfigError) -> NodeConfig {
        let d = root.diagnostics

        var sponsor: Sponsor?
        if let map = root.required("sponsor")?.mapping() {
            let nameValue = map.required("name")
            let name = nameValue?.nonEmptyString()
            if let name, !Self.isDNSLabel(name) {
                nameValue?.report("\"\(name)\" must be a DNS label: lowercase letters, digits and '-', at most 63 characters")
            }
            var url: String?
            if let value = map.optional("url") {
                url = value.nonEmptyString()
                if let u = url, !(u.hasPrefix("https://") || u.hasPrefix("http://")) { value.report("must be an http(s):// URL") }
            }
            map.rejectUnknownKeys()
            if let name { sponsor = Sponsor(name: name, url: url) }
        }

        var hostname = sponsor.map { "\($0.name).\(domain)" }
        if let value = root.optional("hostname"), let text = value.nonEmptyString() {
            if text.count > 253 || !text.split(separator: ".", omittingEmptySubsequences: false).allSatisfy({ isDNSLabel(String($0)) }) {
                value.report("\"\(text)\" is not a valid host name")
            }
            hostname = text
        }

        var interface = InterfaceMatch.firstWired
        var mtu = 1500
        var ipv4: StaticAddress?
        var ipv6: StaticAddress?
        var dns: [IPAddress] = []
        var dscp = DSCP.cs1
        if let net = root.required("network")?.mapping() {
            if let value = net.optional("interface") {
                if let map = value.mapping() {
                    if let macValue = map.optional("mac"), let mac = macValue.nonEmptyString() {
                        if Self.isMAC(mac) { interface = .mac(mac.lowercased()) } else { macValue.report("\"\(mac)\" is not a MAC address like 52:54:00:12:34:56") }
                    }
                    map.rejectUnknownKeys()
                }
            }
            if let value = net.optional("mtu"), let number = value.int() {
                if number < 1280 || number > 9216 { value.report("\(number) is out of range (1280 to 9216; IPv6 needs at least 1280)") }
                mtu = number
            }
            ipv4 = staticAddress(net.optional("ipv4"), family: "IPv4", v4: true)
            ipv6 = staticAddress(net.optional("ipv6"), family: "IPv6", v4: false)
            if !net.has("ipv4"), !net.has("ipv6") {
                d.report(line: net.line, field: "network", "needs ipv4, ipv6 or both: the sponsor assigns static addresses")
            }
            if let list = net.optional("dns")?.list() {
                var seen: Set<IPAddress> = []
                for item in list {
                    guard let text = item.string() else { continue }
                    guard let address = IPAddress(text) else {
                        item.report("\"\(text)\" is not an IP address")
                        continue
                    }
                    if !seen.insert(address).inserted { item.report("\(text) is listed twice") }
                    if address.isIPv4, net.has("ipv6"), !net.has("ipv4") {
                        item.report("an IPv4 resolver on an IPv6-only node cannot be reached")
                    }
                    if !address.isIPv4, net.has("ipv4"), !net.has("ipv6") {
                        item.report("an IPv6 resolver on an IPv4-only node cannot be reached")
                    }
                    dns.append(address)
                }
            } else if net.optional("dns") == nil {
                d.report(line: net.line, field: "network.dns", "missing (required): at least one resolver")
            }
            if let value = net.optional("dscp"), let text = value.string() {
                if let parsed = DSCP(rawValue: text.lowercased()) { dscp = parsed } else { value.report("expected cs1 or none, found \"\(text)\"") }
            }
            net.rejectUnknownKeys()
        }

        var sshKeys: [String] = []
        if let list = root.required("ssh-keys")?.list() {
            if list.isEmpty { root.optional("ssh-keys")?.report("needs at least one NOC key: nobody could log in") }
            for item in list {
                guard let key = item.nonEmptyString() else { continue }
                let parts = key.split(separator: " ")
                let types = ["ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "sk-ssh-ed25519@openssh.com"]
                if parts.count < 2 || !types.contains(String(parts[0])) || Data(base64Encoded: String(parts[1])) == nil {
                    item.report("not an OpenSSH public key line (\"ssh-ed25519 AAAA… comment\")")
                } else {
                    sshKeys.append(key)
                }
            }
        }

        var projects: [String] = []
        if let list = root.required("projects")?.list() {
            var seen: Set<String> = []
            for item in list {
                guard let name = item.nonEmptyString() else { continue }
                if !Self.isDNSLabel(name) { item.report("\"\(name)\" is not a project name (lowercase letters, digits, '-')") }
                if !seen.insert(name).inserted { item.report("duplicate project \"\(name)\"") }
                projects.append(name)
            }
        }

        var upstream = ""
        if let value = root.required("upstream"), let text = value.nonEmptyString() {
            if !text.hasPrefix("rsync://") || text.count <= "rsync://".count { value.report("must be an rsync:// URL, found \"\(text)\"") }
            upstream = text
        }

        var mqtt: MQTT?
        if let map = root.optional("mqtt")?.mapping() {
            let brokerValue = map.required("broker")
            let broker = brokerValue?.nonEmptyString()
            if let broker, !(broker.hasPrefix("mqtt://") || broker.hasPrefix("mqtts://")) {
                brokerValue?.report("must be an mqtt:// or mqtts:// URL")
            }
            let prefix = map.optional("topic-prefix")?.nonEmptyString() ?? "micromirror"
            map.rejectUnknownKeys()
            if let broker { mqtt = MQTT(broker: broker, topicPrefix: prefix) }
        }

        var telemetry: String?
        if let map = root.optional("telemetry")?.mapping() {
            let value = map.required("target")
            telemetry = value?.nonEmptyString()
            if let t = telemetry, !(t.hasPrefix("mqtts://") || t.hasPrefix("mqtt://")) {
                value?.report("must be the watchtower's MQTT broker, an mqtt:// or mqtts:// URL, found \"\(t)\"")
            }
            map.rejectUnknownKeys()
        }

        var update = Update(channel: "stable", window: MaintenanceWindow.anyTime)
        if let map = root.optional("update")?.mapping() {
            if let value = map.optional("channel"), let text = value.nonEmptyString() {
                if text.hasPrefix("http://") || text.hasPrefix("https://") {
                    if URL(string: text)?.host == nil || !text.hasSuffix(".json") { value.report("expected a channel name or an http(s)://HOST/…/NAME.json URL, found \"\(text)\"") }
                } else if !Self.isDNSLabel(text) {
                    value.report("\"\(text)\" is not a channel name (or an http(s):// URL of its index)")
                }
                update.channel = text
            }
            if let value = map.optional("maintenance-window"), let text = value.nonEmptyString() {
                if text == "any" { update.window = .anyTime } else if let window = MaintenanceWindow(text) { update.window = window } else {
                    value.report("expected \"any\" or a window like \"02:00-04:00\" or \"Tue 02:00-04:00\" (UTC), found \"\(text)\"")
                }
            }
            if let value = map.optional("check-interval"), let text = value.nonEmptyString() {
                if let interval = DurationText.parse(text), interval >= .seconds(60) { update.checkInterval = interval } else {
                    value.report("expected a duration of a minute or more like \"6h\", \"30m\" or \"90s\", found \"\(text)\"")
                }
            }
            map.rejectUnknownKeys()
        }

        root.rejectUnknownKeys()
        try d.throwIfAny()
        return NodeConfig(
            sponsor: sponsor!, hostname: hostname!, interface: interface, mtu: mtu, ipv4: ipv4, ipv6: ipv6, dns: dns, dscp: dscp,
            sshKeys: sshKeys, projects: projects, upstream: upstream, mqtt: mqtt, telemetry: telemetry, update: update
        )
    }

    /// Reads `{address: A/P, gateway: G}` and checks family, prefix range and that the gateway is on-link.
    static func staticAddress(_ value: YAMLValue?, family: String, v4: Bool) -> StaticAddress? {
        guard let value, let map = value.mapping() else { return nil }
        defer { map.rejectUnknownKeys() }
        let addressValue = map.required("address")
        let gatewayValue = map.required("gateway")
        var result: (IPAddress, Int)?
        if let addressValue, let text = addressValue.nonEmptyString() {
            let parts = text.split(separator: "/", omittingEmptySubsequences: false)
            if parts.count != 2 {
                addressValue.report("expected ADDRESS/PREFIX, e.g. \(v4 ? "192.0.2.10/24" : "2001:db8::10/64"), found \"\(text)\"")
            } else if let address = IPAddress(String(parts[0])), address.isIPv4 == v4 {
                if let prefix = Int(parts[1]), prefix >= (v4 ? 8 : 16), prefix <= address.maxPrefix {
                    if address.isUnspecified || address.isMulticast || address.isLoopback || address.isIPv6LinkLocal {
                        addressValue.report("\(address) cannot be a host's static address")
                    } else {
                        result = (address, prefix)
                    }
                } else {
                    addressValue.report("prefix /\(parts[1]) is out of range for \(family) (\(v4 ? 8 : 16) to \(v4 ? 32 : 128))")
                }
            } else {
                addressValue.report("\"\(parts[0])\" is not an \(family) address")
            }
        }
        var gateway: IPAddress?
        if let gatewayValue, let text = gatewayValue.nonEmptyString() {
            if let address = IPAddress(text), address.isIPv4 == v4 {
                gateway = address
            } else {
                gatewayValue.report("\"\(text)\" is not an \(family) address")
            }
        }
        guard let (address, prefix) = result, let gateway else { return nil }
        if gateway == address {
            gatewayValue?.report("the gateway cannot be the node's own address")
            return nil
        }
        // An IPv6 link-local gateway is always on-link; anything else must be inside the prefix.
        if !gateway.isIPv6LinkLocal, !gateway.sharesPrefix(prefix, with: address) || prefix == address.maxPrefix {
            gatewayValue?.report("gateway \(gateway) is not on-link: it is outside \(address)/\(prefix)")
            return nil
        }
        return StaticAddress(address: address, prefix: prefix, gateway: gateway)
    }

    static func isDNSLabel(_ text: String) -> Bool {
        guard !text.isEmpty, text.count <= 63, text.first != "-", text.last != "-" else { return false }
        return text.allSatisfy { ($0.isLowercase && $0.isASCII) || ($0.isNumber && $0.isASCII) || $0 == "-" }
    }

    static func isMAC(_ text: String) -> Bool {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        return parts.count == 6 && parts.allSatisfy { $0.count == 2 && UInt8($0, radix: 16) != nil }
    }
}
