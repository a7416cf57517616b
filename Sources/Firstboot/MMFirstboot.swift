import ArgumentParser
import Foundation
import Logging
import FirstbootCore
import MicromirrorKit
import SystemKit

@main
struct MMFirstboot: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mm-firstboot",
        abstract: "Apply the node's configuration at boot.",
        subcommands: [Apply.self, Render.self]
    )
}

/// Logs to stderr (the journal, under the unit) at MM_LOG_LEVEL, default info.
func firstbootLogger() -> Logger {
    LoggingSystem.bootstrap { label in
        var handler = StreamLogHandler.standardError(label: label)
        handler.logLevel = Logger.Level(rawValue: ProcessInfo.processInfo.environment["MM_LOG_LEVEL"] ?? "info") ?? .info
        return handler
    }
    return Logger(label: "mm-firstboot")
}
