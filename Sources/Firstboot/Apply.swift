import ArgumentParser
import Foundation
import Logging
import FirstbootCore
import MicromirrorKit
import SystemKit

struct Apply: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Apply the node file: network, host name, firewall and DSCP, SSH keys; on first boot grow the disk and create the identity."
    )

    @Option(help: "Node file.") var config = NodeConfig.defaultPath
    @Option(help: "Persistent state directory (the mm-config mount).") var state = NodePaths.standard.config
    @Option(help: "Root of the system to configure.") var root = "/"
    @Option(help: "Disk to grow on first boot. Default: the disk holding mm-config.") var disk: String?
    @Option(help: "sysfs net directory.") var sysfsNet = "/sys/class/net"
    @Option(help: "Steps to run (comma-separated): network,hostname,firewall,ssh,identity,disk,console.") var steps: String?

    func run() async throws {
        var options = Firstboot.Options()
        options.config = config
        options.state = state
        options.root = root
        options.disk = disk
        options.sysfsNet = sysfsNet
        if let steps {
            var chosen: Set<FirstbootStep> = []
            for name in steps.split(separator: ",") {
                guard let step = FirstbootStep(rawValue: String(name)) else { throw ValidationError("unknown step \(name)") }
                chosen.insert(step)
            }
            options.steps = chosen
        }
        let logger = firstbootLogger()
        let report = try await Firstboot(options: options, runner: CommandRunner(logger: logger)).run()
        for note in report.notes { print("mm-firstboot: \(note)") }
        if let applied = report.applied {
            print("mm-firstboot: \(report.usedLastGood ? "kept last good config for" : "applied") \(applied.hostname)")
        }
        for problem in report.problems { print("mm-firstboot: PROBLEM: \(problem)") }
        if !report.problems.isEmpty { throw ExitCode(1) }
    }
}
