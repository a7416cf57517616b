import ArgumentParser
import Foundation
import MicromirrorKit

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

    func run() async throws {
        let status = try BootStatus.read(cmdlinePath: cmdline, identityPath: identity)
        print(status.line)
    }
}
