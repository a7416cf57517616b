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
/// Each check is retried until all pass or the deadline passes (services may still be starting),
/// unless one cannot pass in this boot at all (a unit failed or masked): then the verdict is at once.
/// `mm-node health` runs it as a unit ordered before `boot-complete.target`; a pass lets
/// systemd-bless-boot keep the new slot, a failure on a trial boot marks the entry bad and reboots
/// into the other slot at once.
public struct HealthCheck: Sendable {
    /// What one look at a check found.
    public enum Outcome: Sendable, Equatable {
        case pass
        /// Not yet: may pass at a later look (a service still starting, an address not up yet).
        case waiting(String)
        /// Cannot pass in this boot (a unit failed or is masked): the verdict comes at once, so an
        /// unhealthy trial boot falls back in seconds, not at the deadline.
        case failed(String)
    }

    public struct Check: Sendable {
        public var name: String
        public var probe: @Sendable () async -> Outcome
        public init(name: String, probe: @escaping @Sendable () async -> Outcome) {
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

    /// Runs every check until all pass, one fails for good, or the deadline passes; the verdict
    /// lists what did not pass.
    public func run<C: Clock>(clock: C = ContinuousClock()) async -> Verdict where C.Duration == Duration {
        let end = clock.now.advanced(by: deadline)
        while true {
            var failures: [(String, String)] = []
            var final = false
            for check in checks {
                switch await check.probe() {
                case .pass: break
                case .waiting(let why): failures.append((check.name, why))
                case .failed(let why):
                    failures.append((check.name, why))
                    final = true
                }
            }
            if failures.isEmpty || final || clock.now >= end { return Verdict(failures: failures) }
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
            MountTable.current().isMountPoint(dataMount) ? .pass : .waiting("\(dataMount) is not mounted")
        })
        for unit in ["mm-firstboot.service"] + units {
            checks.append(Check(name: unit) { await unitActive(unit, runner: runner) })
        }
        for address in [node.ipv4?.address, node.ipv6?.address].compactMap({ $0 }) {
            let text = "\(address)"
            checks.append(Check(name: "address \(text)") {
                localAddresses().contains(text) ? .pass : .waiting("\(text) is not configured on any interface")
            })
            let host = text.contains(":") ? "[\(text)]" : text
            checks.append(Check(name: "http on \(text)") { await httpAnswers("http://\(host):\(port)/") })
        }
        return checks
    }

    static func unitActive(_ unit: String, runner: CommandRunner) async -> Outcome {
        let output = (try? await runner.run(Tool("systemctl", package: "systemd"), ["show", "--property=LoadState,ActiveState", unit])) ?? ""
        return unitOutcome(unit, show: output)
    }

    /// Reads `systemctl show --property=LoadState,ActiveState` output: active passes; failed, masked
    /// or missing cannot pass in this boot; anything else (activating, a restart pending) may yet.
    static func unitOutcome(_ unit: String, show output: String) -> Outcome {
        var properties: [String: String] = [:]
        for line in output.split(separator: "\n") {
            let parts = line.split(separator: "=", maxSplits: 1).map(String.init)
            if parts.count == 2 { properties[parts[0]] = parts[1].trimmingCharacters(in: .whitespaces) }
        }
        let load = properties["LoadState"] ?? "unknown"
        let active = properties["ActiveState"] ?? "unknown"
        if active == "active" { return .pass }
        if ["masked", "not-found", "bad-setting", "error"].contains(load) { return .failed("\(unit) is \(load)") }
        if active == "failed" { return .failed("\(unit) failed") }
        return .waiting("\(unit) is \(active)")
    }

    /// `GET url` answers 200 within a few seconds.
    public static func httpAnswers(_ url: String) async -> Outcome {
        do {
            let response = try await HTTPClient.shared.execute(HTTPClientRequest(url: url), timeout: .seconds(5))
            _ = try await response.body.collect(upTo: 1 << 20)
            return response.status.code == 200 ? .pass : .waiting("GET \(url) answered \(response.status.code)")
        } catch {
            return .waiting("GET \(url): \(error)")
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
