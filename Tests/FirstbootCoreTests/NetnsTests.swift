import Foundation
import MicromirrorKit
import MicromirrorTestSupport
import Testing

/// mm-firstboot applies a node file inside a network namespace of our own; the real
/// systemd-networkd brings up the addresses from the files it wrote; the peer namespace pings both
/// families and tcpdump checks the DSCP of the node's replies.
@Suite("Firstboot in network namespaces", .serialized)
struct NetnsTests {
    static var binaries: String { ProcessInfo.processInfo.environment["MM_BINARIES"] ?? packageRoot + "/.build/release" }

    /// A node namespace and a peer namespace joined by a veth pair; torn down afterwards.
    struct Pair {
        var node: String
        var peer: String
        var nodeMAC: String

        init(tag: String) async throws {
            let suffix = String(UUID().uuidString.prefix(6)).lowercased()
            node = "mmt-n-\(tag)-\(suffix)"
            peer = "mmt-p-\(tag)-\(suffix)"
            let nodeIf = "mmn\(suffix)"
            let peerIf = "mmp\(suffix)"
            nodeMAC = "52:54:00:" + (0..<3).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined(separator: ":")
            for command in [
                ["netns", "add", node], ["netns", "add", peer],
                ["link", "add", nodeIf, "address", nodeMAC, "type", "veth", "peer", "name", peerIf],
                ["link", "set", nodeIf, "netns", node], ["link", "set", peerIf, "netns", peer],
                ["-n", peer, "addr", "add", "192.0.2.1/24", "dev", peerIf],
                ["-n", peer, "addr", "add", "2001:db8:10::1/64", "dev", peerIf, "nodad"],
                ["-n", peer, "link", "set", peerIf, "up"], ["-n", peer, "link", "set", "lo", "up"],
                ["-n", node, "link", "set", "lo", "up"],
            ] {
                let result = try await Shell.run("ip", command)
                guard result.status == 0 else { throw NetnsError("ip \(command.joined(separator: " ")): \(result.output)") }
            }
            self.peerInterface = peerIf
        }

        var peerInterface: String

        func destroy() {
            ToolRun.cleanUp("ip", ["netns", "del", node])
            ToolRun.cleanUp("ip", ["netns", "del", peer])
        }
    }

    struct NetnsError: Error, CustomStringConvertible {
        var description: String
        init(_ d: String) { description = d }
    }

    /// Applies `nodeText` in the pair's node namespace with mm-firstboot, then runs systemd-networkd
    /// there (its own /run, read-only /sys so it does not wait for udev) for `seconds`.
    func applyAndRunNetworkd(_ pair: Pair, nodeText: String, seconds: Int) async throws -> (Process, String) {
        let dir = NSTemporaryDirectory() + "mm-netns-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir + "/state", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: dir + "/root", withIntermediateDirectories: true)
        try nodeText.write(toFile: dir + "/node.yaml", atomically: true, encoding: .utf8)
        let apply = try await Shell.run(
            "ip",
            [
                "netns", "exec", pair.node, Self.binaries + "/mm-firstboot", "apply", "--config", dir + "/node.yaml", "--state", dir + "/state",
                "--root", dir + "/root", "--steps", "network,firewall,hostname,ssh,console",
            ]
        )
        guard apply.status == 0 else { throw NetnsError("mm-firstboot apply failed: \(apply.output)") }
        let script = """
            mount -o remount,bind,ro /sys && mount -t tmpfs none /run/systemd && \
            mkdir -p /run/systemd/network /run/systemd/netif && chown systemd-network: /run/systemd/netif && \
            cp \(dir)/root/run/systemd/network/* /run/systemd/network/ && exec timeout \(seconds) /lib/systemd/systemd-networkd
            """
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["ip", "netns", "exec", pair.node, "unshare", "-m", "sh", "-c", script]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        return (process, dir)
    }

    /// Waits until the node namespace has `address` on wan0.
    func waitForAddress(_ pair: Pair, _ address: String) async throws -> Bool {
        for _ in 0..<50 {
            let out = try await Shell.run("ip", ["-n", pair.node, "addr", "show", "dev", "wan0"]).output
            if out.contains(address) && !out.contains("tentative") { return true }
            try await Task.sleep(for: .milliseconds(200))
        }
        return false
    }

    /// Captures the node's ICMP replies in the peer namespace while pinging it; returns tcpdump -v output.
    func captureReplies(_ pair: Pair) async throws -> String {
        try await ToolRun.capture(
            [
                "ip", "netns", "exec", pair.peer, "timeout", "15", "tcpdump", "-n", "-v", "-l", "-c", "4", "-i", pair.peerInterface,
                "(icmp and src 192.0.2.10) or (icmp6 and src 2001:db8:10::10 and ip6[40] == 129)",
            ],
            settle: 1.5
        ) {
            let v4 = try await Shell.run("ip", ["netns", "exec", pair.peer, "ping", "-c", "2", "-i", "0.3", "-W", "2", "192.0.2.10"])
            let v6 = try await Shell.run("ip", ["netns", "exec", pair.peer, "ping", "-6", "-c", "2", "-i", "0.3", "-W", "2", "2001:db8:10::10"])
            #expect(v4.status == 0, "IPv4 ping failed: \(v4.output)")
            #expect(v6.status == 0, "IPv6 ping failed: \(v6.output)")
        }
    }

    func nodeFile(mac: String, dscp: String) -> String {
        node([("network:\n", "network:\n  interface: {mac: \"\(mac)\"}\n  dscp: \(dscp)\n")])
    }

    @Test("static addresses from networkd, both families reachable, replies marked CS1")
    func marked() async throws {
        let pair = try await Pair(tag: "cs1")
        defer { pair.destroy() }
        let (networkd, dir) = try await applyAndRunNetworkd(pair, nodeText: nodeFile(mac: pair.nodeMAC, dscp: "cs1"), seconds: 30)
        defer { networkd.terminate(); try? FileManager.default.removeItem(atPath: dir) }
        await #expect(try waitForAddress(pair, "192.0.2.10/24"), "networkd did not configure IPv4")
        await #expect(try waitForAddress(pair, "2001:db8:10::10/64"), "networkd did not configure IPv6")
        let routes = try await Shell.run("ip", ["-n", pair.node, "route", "show", "default"]).output
        #expect(routes.contains("default via 192.0.2.1 dev wan0"))
        let routes6 = try await Shell.run("ip", ["-n", pair.node, "-6", "route", "show", "default"]).output
        #expect(routes6.contains("default via 2001:db8:10::1 dev wan0"))
        let rules = try await Shell.run("ip", ["netns", "exec", pair.node, "nft", "list", "table", "inet", "micromirror"]).output
        #expect(rules.contains("ip dscp set cs1") && rules.contains("ip6 dscp set cs1"))
        let capture = try await captureReplies(pair)
        #expect(capture.contains("tos 0x20"), "IPv4 replies not CS1:\n\(capture)")
        #expect(capture.contains("class 0x20"), "IPv6 replies not CS1:\n\(capture)")
        // The rendered files are what apply wrote.
        let hostname = try String(contentsOfFile: dir + "/root/etc/hostname", encoding: .utf8)
        #expect(hostname == "example-isp.mm.fcix.net\n")
        let issue = try String(contentsOfFile: dir + "/root/etc/issue.d/50-micromirror.issue", encoding: .utf8)
        #expect(issue.contains("node file applied"))
    }

    @Test("an opted-out node's replies carry no DSCP mark")
    func optedOut() async throws {
        let pair = try await Pair(tag: "none")
        defer { pair.destroy() }
        let (networkd, dir) = try await applyAndRunNetworkd(pair, nodeText: nodeFile(mac: pair.nodeMAC, dscp: "none"), seconds: 30)
        defer { networkd.terminate(); try? FileManager.default.removeItem(atPath: dir) }
        await #expect(try waitForAddress(pair, "192.0.2.10/24"))
        await #expect(try waitForAddress(pair, "2001:db8:10::10/64"))
        let capture = try await captureReplies(pair)
        #expect(!capture.contains("tos 0x20") && capture.contains("tos 0x0"), "IPv4 replies should be unmarked:\n\(capture)")
        #expect(!capture.contains("class 0x20"), "IPv6 replies should be unmarked:\n\(capture)")
    }

    @Test("the firewall drops what the mirror does not serve")
    func firewall() async throws {
        let pair = try await Pair(tag: "fw")
        defer { pair.destroy() }
        let (networkd, dir) = try await applyAndRunNetworkd(pair, nodeText: nodeFile(mac: pair.nodeMAC, dscp: "cs1"), seconds: 30)
        defer { networkd.terminate(); try? FileManager.default.removeItem(atPath: dir) }
        await #expect(try waitForAddress(pair, "192.0.2.10/24"))
        // A listener on an unlisted port inside the node namespace is unreachable; one on 80 (http) is reachable.
        let listeners = Process()
        listeners.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        listeners.arguments = [
            "ip", "netns", "exec", pair.node, "python3", "-c",
            "import socket,time\nfor p in (80,8081):\n s=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);s.bind(('0.0.0.0',p));s.listen();globals()['s%d'%p]=s\ntime.sleep(8)",
        ]
        try listeners.run()
        defer { listeners.terminate() }
        try await Task.sleep(for: .seconds(1))
        let probe = "import socket,sys\ns=socket.socket();s.settimeout(2)\ntry:\n s.connect(('192.0.2.10',int(sys.argv[1])));print('open')\nexcept Exception as e:\n print('closed',e)"
        let open = try await Shell.run("ip", ["netns", "exec", pair.peer, "python3", "-c", probe, "80"]).output
        let closed = try await Shell.run("ip", ["netns", "exec", pair.peer, "python3", "-c", probe, "8081"]).output
        #expect(open.contains("open"), "the http port should be admitted: \(open)")
        #expect(closed.contains("closed") && closed.contains("timed out"), "port 8081 should be dropped: \(closed)")
    }
}
