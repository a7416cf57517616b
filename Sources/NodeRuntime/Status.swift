import ArgumentParser
import Foundation
import Logging
import MicromirrorKit
import NodeRuntimeCore
import SystemKit

struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print the booted slot and image (the boot line on the console).")

    @Option(help: "Kernel command line to read.") var cmdline = "/proc/cmdline"
    @Option(help: "Image identity file.") var identity = NodePaths.imageIdentity
    @Flag(help: "Also list the units systemd reports as failed, and mm-firstboot's state.") var failedUnits = false

    func run() async throws {
        var status = try BootStatus.read(cmdlinePath: cmdline, identityPath: identity)
        if failedUnits {
            try await status.readUnits(runner: CommandRunner(logger: Logger(label: "mm-node.status")))
        }
        print(status.line)
    }
}
