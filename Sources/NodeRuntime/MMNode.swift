import ArgumentParser
import Foundation
import MicromirrorKit

@main
struct MMNode: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mm-node",
        abstract: "The node runtime: serve, sync, report, update. (Serving, syncing and updates are not built yet.)",
        subcommands: [Status.self]
    )
}

struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print the booted slot and image.")

    func run() async throws {
        print(try BootStatus.read(cmdlinePath: "/proc/cmdline", identityPath: "/usr/lib/micromirror/image.json").line)
    }
}
