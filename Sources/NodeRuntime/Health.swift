import ArgumentParser
import Foundation
import Logging
import MicromirrorKit
import NodeRuntimeCore
import SystemKit

struct Health: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "The boot's health gate: node file applied, mm-data mounted, static addresses up, HTTP answering on them, the node's units running."
    )

    @Option(help: "Node file.") var config = NodeConfig.defaultPath
    @Option(help: "Units that must be active (repeatable).") var unit: [String] = ["mm-node-serve.service", "mm-node-sync.service"]
    @Option(help: "Seconds to keep retrying before the verdict.") var deadline = 180
    @Option(help: "Port the mirror serves on.") var port = 80
    @Flag(help: "On a failing verdict during a trial boot (the entry still counts tries), mark the entry bad and reboot into the other slot.")
    var rebootOnFailure = false
    @Option(help: "Mounted ESP (to tell a trial boot).") var esp = NodePaths.esp

    func run() async throws {
        LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }
        let logger = Logger(label: "mm-node.health")
        let runner = CommandRunner(logger: logger)
        // The node file as firstboot applied it: the last good one when the current one is broken.
        let node = (try? NodeConfig.loadOrLastGood(path: config))?.config
        guard let node else {
            print("mm-node health: unhealthy: no valid node file at \(config)")
            try await failed(runner: runner, logger: logger)
            return
        }
        let check = HealthCheck(checks: HealthCheck.node(node, units: unit, port: port, runner: runner), deadline: .seconds(Int64(deadline)))
        let verdict = await check.run()
        print("mm-node health: \(verdict.text)")
        if !verdict.healthy { try await failed(runner: runner, logger: logger) }
    }

    func failed(runner: CommandRunner, logger: Logger) async throws {
        let slot = KernelCommandLine.read().slot
        let boot = BootInstaller(esp: esp)
        if rebootOnFailure, let entry = boot.entry(slot: slot), entry.counting {
            logger.critical("trial boot unhealthy: marking slot \(slot)'s entry bad and rebooting into the other slot")
            // Done here rather than by systemd-bless-boot, which refuses to find the ESP in this
            // unit's sandbox (no block devices): a bad entry has no tries left, so the next boot takes
            // the other slot instead of spending the remaining tries on this one.
            do {
                let bad = try boot.markBad(slot: slot)
                print("mm-node health: slot \(slot)'s entry is now \(bad ?? "?"); rebooting into the other slot")
            } catch {
                print("mm-node health: cannot mark slot \(slot)'s entry bad (\(error)); rebooting, which spends one of its tries")
            }
            _ = try? await runner.run(Tool("systemctl", package: "systemd"), ["reboot"])
        }
        throw ExitCode(1)
    }
}
