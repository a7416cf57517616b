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
        static let configuration = CommandConfiguration(
            abstract: "Validate a node file; print every problem with line and field. Its projects are checked against the recipes of an image (--image) or a directory (--recipes, default recipes/ when there is one)."
        )
        @Argument(help: "Node file (YAML).") var file: String
        @Option(help: "Recipes directory to check the projects against. Default: recipes/ in the current directory, when there is one.") var recipes: String?
        @Option(help: "Disk image or disk whose recipes the projects must have (read from its root; needs root for a loop device).") var image: String?

        func run() async throws {
            do {
                let config = try NodeConfig.load(path: file)
                var checked = "projects not checked against any recipes (give --recipes DIR or --image DISK)"
                var known: Set<String>?
                var source = ""
                if let image {
                    known = try await ImageRecipes(logger: CLILogging.logger("mm-image.node")).projects(onDisk: image)
                    source = "the image on \(image)"
                } else if let directory = recipes ?? (FileManager.default.fileExists(atPath: "recipes") ? "recipes" : nil) {
                    known = try ImageRecipes.projects(inDirectory: directory)
                    source = directory
                }
                if let known {
                    let problems = ImageRecipes.problems(config, file: file, known: known, source: source)
                    guard problems.isEmpty else { throw ConfigError(problems: problems) }
                    checked = "every project has a recipe in \(source)"
                }
                let families = [config.ipv4.map { "IPv4 \($0.cidr) via \($0.gateway)" }, config.ipv6.map { "IPv6 \($0.cidr) via \($0.gateway)" }]
                    .compactMap { $0 }.joined(separator: ", ")
                print("\(file): ok: \(config.hostname), \(families), DSCP \(config.dscp.rawValue), projects \(config.projects.joined(separator: ", ")) (\(checked))")
            } catch let error as ConfigError {
                FileHandle.standardError.write(Data("mm-image: \(file): \(error)\n".utf8))
                throw ExitCode(1)
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
        @Option(help: "Recipes to check the projects against when the image's own cannot be read (not root).") var recipes: String?
        @Option(help: "Fedora MirrorManager's report_mirror.conf for this node (its site password stays root-only on mm-config).") var reportMirror: String?

        func run() async throws {
            do {
                let config = try await NodeFileWriter(logger: CLILogging.logger("mm-image.node")).write(nodeFile: file, to: target, recipes: recipes, reportMirror: reportMirror)
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
