import ArgumentParser
import Foundation
import ImageBuilderCore
import Logging
import MicromirrorKit
import SystemKit

struct Node: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check a node file, or write it into an image or disk.",
        subcommands: [Check.self, Write.self]
    )

    struct Check: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Validate a node file; print every problem with line and field.")
        @Argument(help: "Node file (YAML).") var file: String

        func run() async throws {
            do {
                let config = try NodeConfig.load(path: file)
                let families = [config.ipv4.map { "IPv4 \($0.cidr) via \($0.gateway)" }, config.ipv6.map { "IPv6 \($0.cidr) via \($0.gateway)" }]
                    .compactMap { $0 }.joined(separator: ", ")
                print("\(file): ok: \(config.hostname), \(families), DSCP \(config.dscp.rawValue), projects \(config.projects.joined(separator: ", "))")
            } catch {
                FileHandle.standardError.write(Data("mm-image: \(file): \(error)\n".utf8))
                throw ExitCode(1)
            }
        }
    }

    struct Write: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Validate NODE.yaml and write it into the mm-config partition of IMAGE or DEVICE.")
        @Argument(help: "Disk image file or block device.") var target: String
        @Argument(help: "Node file (YAML).") var file: String

        func run() async throws {
            do {
                let config = try await NodeFileWriter(logger: CLILogging.logger("mm-image.node")).write(nodeFile: file, to: target)
                print("wrote \(file) (\(config.hostname)) into mm-config on \(target)")
            } catch let error as ConfigError {
                FileHandle.standardError.write(Data("mm-image: \(file): \(error)\nnothing was written\n".utf8))
                throw ExitCode(1)
            } catch {
                throw fail(error)
            }
        }
    }
}
