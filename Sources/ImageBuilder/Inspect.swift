import ArgumentParser
import Foundation
import ImageBuilderCore
import Logging
import MicromirrorKit
import SystemKit

struct Inspect: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show a disk image's partitions, filesystems, boot entries and version.")

    @Argument(help: "Disk image file or block device.") var image: String
    @Flag(help: "Print JSON.") var json = false

    func run() async throws {
        do {
            let report = try await ImageInspector(logger: CLILogging.logger("mm-image.inspect")).inspect(path: image)
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
                print(String(decoding: try encoder.encode(report), as: UTF8.self))
            } else {
                print(report.text)
            }
        } catch {
            throw fail(error)
        }
    }
}
