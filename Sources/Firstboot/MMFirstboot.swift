import ArgumentParser
import Foundation
import Logging
import MicromirrorKit
import SystemKit

@main
struct MMFirstboot: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mm-firstboot",
        abstract: "Apply the node's configuration at boot.",
        subcommands: [Status.self]
    )
}

struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Report which slot and image this node booted.")

    @Option(help: "Kernel command line to read.") var cmdline = "/proc/cmdline"
    @Option(help: "Image identity file.") var identity = "/usr/lib/micromirror/image.json"
    @Flag(help: "Also list the units systemd reports as failed.") var failedUnits = false

    func run() async throws {
        var status = try BootStatus.read(cmdlinePath: cmdline, identityPath: identity)
        if failedUnits {
            let runner = CommandRunner(logger: Logger(label: "mm-firstboot"))
            let listing = try await runner.run(
                Tool("systemctl", package: "systemd"), ["list-units", "--state=failed", "--plain", "--no-legend", "--no-pager"]
            )
            status.failedUnits = listing.split(separator: "\n").compactMap { $0.split(separator: " ").first.map(String.init) }
        }
        print(status.line)
    }
}
