import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import Logging
import MicromirrorKit
import SystemKit

/// The health gate of a boot: what a mirror needs to be of use, checked on the node itself and
/// on nothing outside it (an upstream outage during a rollout must not roll the fleet back).
///
/// Each check is retried until all pass or the deadline passes: services may still be starting.
/// `mm-node health` runs it as a unit ordered before `boot-complete.target`; a pass lets
/// systemd-bless-boot keep the new slot, a failure on a trial boot marks the entry bad and reboots
/// into the other slot at once.
public struct HealthCheck: Sendable {
    public struct Check: Sendable {
        public var name: String
        /// Nil when healthy, else what is wrong.
        public var probe: @Sendable () async -> String?
        public init(name: String, probe: @escaping @Sendable () async -> String?) {
            self.name = name
            self.probe = probe
        }
    }

    public struct Verdict: Sendable {
        public var failures: [(name: String, why: String)]
        public var healthy: Bool { failures.isEmpty }
        public var text: String {
            healthy ? "healthy" : "unhealthy: " + failures.map { "\($0.name): \($0.why)" }.joined(separator: "; ")
        }
    }

    public var checks: [Check]
    public var deadline: Duration
    public var retryEvery: Duration = .seconds(2)

    public init(checks: [Check], deadline: Duration = .seconds(180)) {
        self.checks = checks
        self.deadline = deadline
    }

    /// Runs every check until all pass or the deadline passes; the verdict lists what still failed.
    public func run<C: Clock>(clock: C = ContinuousClock()) async -> Verdict where C.Duration == Duration {
        let end = clock.now.advanced(by: deadline)
        while true {
            var failures: [(String, String)] = []
            for check in checks {
                if let why = await check.probe() { failures.append((check.name, why)) }
            }
            if failures.isEmpty || clock.now >= end { return Verdict(failures: failures) }
            try? await clock.sleep(for: retryEvery)
            if Task.isCancelled { return Verdict(failures: failures) }
        }
    }

    // MARK: - The node's checks

    /// The checks of a node: its node file applied, mm-data mounted, its static addresses up, the
    /// mirror answering HTTP on each of them, and its units running.
    public static func node(_ node: NodeConfig, units: [String], dataMount: String = NodePaths.standard.data, port: Int = 80, runner: CommandRunner) -> [Check] {
        var checks: [Check] = []
        checks.append(Check(name: "mm-data") {
            MountTable.current().isMountPoint(dataMount) ? nil : "\(dataMount) is not mounted"
        })
        for unit in ["mm-firstboot.service"] + units {
            checks.append(Check(name: unit) { await unitActive(unit, runner: runner) })
        }
        for address in [node.ipv4?.address, node.ipv6?.address].compactMap({ $0 }) {
            let text = "\(address)"
            checks.append(Check(name: "address \(text)") {
                localAddresses().contains(text) ? nil : "\(text) is not configured on any interface"
            })
            let host = text.contains(":") ? "[\(text)]" : text
            checks.append(Check(name: "http on \(text)") { await httpAnswers("http://\(host):\(port)/") })
        }
        return checks
    }

    static func unitActive(_ unit: String, runner: CommandRunner) async -> String? {
        let state = (try? await runner.run(Tool("systemctl", package: "systemd"), ["show", "--property=ActiveState", "--value", unit]))?
            .trimmingCharacters(in: .whitespacesAndNewlines) ?? "unknown"
        return state == "active" ? nil : "\(unit) is \(state)"
    }

    /// `GET url` answers 200 within a few seconds.
    public static func httpAnswers(_ url: String) async -> String? {
        do {
            let response = try await HTTPClient.shared.execute(HTTPClientRequest(url: url), timeout: .seconds(5))
            _ = try await response.body.collect(upTo: 1 << 20)
            return response.status.code == 200 ? nil : "GET \(url) answered \(response.status.code)"
        } catch {
            return "GET \(url): \(error)"
        }
    }

    /// Every address configured on this machine's interfaces, as text.
    public static func localAddresses() -> Set<String> {
        var result: Set<String> = []
        var list: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&list) == 0, let first = list else { return result }
        defer { freeifaddrs(list) }
        var cursor: UnsafeMutablePointer<ifaddrs>? = first
        while let entry = cursor {
            if let address = entry.pointee.ifa_addr {
                var host = [CChar](repeating: 0, count: Int(NI_MAXHOST))
                let length = socklen_t(address.pointee.sa_family == sa_family_t(AF_INET6) ? MemoryLayout<sockaddr_in6>.size : MemoryLayout<sockaddr_in>.size)
                if [sa_family_t(AF_INET), sa_family_t(AF_INET6)].contains(address.pointee.sa_family),
                    getnameinfo(address, length, &host, socklen_t(host.count), nil, 0, NI_NUMERICHOST) == 0
                {
                    result.insert(String(cString: host).split(separator: "%").first.map(String.init) ?? "")
                }
            }
            cursor = entry.pointee.ifa_next
        }
        return result
    }
}
