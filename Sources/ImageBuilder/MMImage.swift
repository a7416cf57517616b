import ArgumentParser
import Foundation
import ImageBuilderCore
import Logging
import MicromirrorKit
import SystemKit

@main
struct MMImage: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mm-image",
        abstract: "Build, inspect and verify micromirror's signed A/B disk images.",
        subcommands: [Build.self, Keygen.self, Inspect.self, Verify.self, Node.self, Publish.self, Disks.self, Flash.self, Inventory.self, Fleet.self]
    )
}

/// Prints an error for people and exits non-zero.
func fail(_ error: any Error) -> ExitCode {
    FileHandle.standardError.write(Data("mm-image: error: \(error)\n".utf8))
    return ExitCode(1)
}
