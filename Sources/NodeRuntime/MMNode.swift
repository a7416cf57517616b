import ArgumentParser
import Foundation
import Logging
import MicromirrorKit
import NodeRuntimeCore
import ServiceLifecycle
import UnixSignals

@main
struct MMNode: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mm-node",
        abstract: "The node runtime: serve, sync, update, check its health.",
        subcommands: [Run.self, Serve.self, Sync.self, History.self, Status.self, Update.self, Health.self, RsyncdConfigCommand.self, ReportMirror.self]
    )
}
