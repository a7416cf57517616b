import ArgumentParser
import Foundation
import Logging
import SystemKit

/// The timestamp every file in the image gets: `SOURCE_DATE_EPOCH` if set, else the last commit's time.
enum SourceDateEpoch {
    static func resolve(logger: Logger) async throws -> Int64 {
        if let text = ProcessInfo.processInfo.environment["SOURCE_DATE_EPOCH"] {
            guard let value = Int64(text), value >= 0 else {
                throw ValidationError("SOURCE_DATE_EPOCH must be a whole number of seconds, found \"\(text)\"")
            }
            return value
        }
        let runner = CommandRunner(logger: logger)
        if let text = try? await runner.run(Tool("git", package: "git"), ["log", "-1", "--format=%ct"]),
            let value = Int64(text.trimmingCharacters(in: .whitespacesAndNewlines))
        {
            return value
        }
        throw ValidationError("set SOURCE_DATE_EPOCH (no git commit to take the build time from)")
    }
}
