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
        subcommands: [Build.self, Keygen.self, Inspect.self, Verify.self, Node.self, Publish.self]
    )
}

/// Logging to stderr, plain lines, level from MM_LOG_LEVEL (default info).
enum CLILogging {
    static let bootstrap: Void = {
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = Logger.Level(rawValue: ProcessInfo.processInfo.environment["MM_LOG_LEVEL"] ?? "info") ?? .info
            return handler
        }
    }()

    static func logger(_ label: String) -> Logger {
        _ = bootstrap
        return Logger(label: label)
    }
}

/// Prints an error for people and exits non-zero.
func fail(_ error: any Error) -> ExitCode {
    FileHandle.standardError.write(Data("mm-image: error: \(error)\n".utf8))
    return ExitCode(1)
}

struct Keygen: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Create an Ed25519 signing key pair: NAME.key (0600) and NAME.pub.")

    @Option(name: .long, help: "Path and base name, e.g. keys/release writes keys/release.key and keys/release.pub.")
    var out: String

    func run() async throws {
        do {
            let key = try SigningKeys.generate(base: out)
            print("wrote \(out).key (private, mode 0600) and \(out).pub (key id \(key.keyID))")
        } catch {
            throw fail(error)
        }
    }
}

struct Build: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Build the signed disk image, update bundle and block map.",
        discussion: "With no options: the default image for QEMU, signed with a development key created once at out/keys/dev.key."
    )

    @Option(help: "Image definition.") var image = "images/micromirror.yaml"
    @Option(help: "Hardware profile.") var hardware = "hardware/qemu-x86_64.yaml"
    @Option(help: "Ed25519 private key (PEM). Default: out/keys/dev.key, created if missing.") var key: String?
    @Option(help: "Extra public key to trust in the image (repeatable).") var trust: [String] = []
    @Option(help: "Image version.") var version = "0.1.0"
    @Option(help: "Monotonic build number. Default: SOURCE_DATE_EPOCH.") var buildNumber: Int64?
    @Option(help: "Output directory.") var out = "out"
    @Option(help: "Rootfs cache directory. Default: OUT/cache.") var cache: String?
    @Option(help: "Directory holding release builds of mm-image, mm-firstboot, mm-node. Default: next to this program.")
    var binaries: String?
    @Option(help: "Recipes to install. Default: recipes/ beside images/.") var recipes: String?
    @Option(help: "Total disk image size (e.g. 4GiB); the data partition takes the rest. Default: as small as possible.")
    var diskSize: String?

    func run() async throws {
        let logger = CLILogging.logger("mm-image.build")
        do {
            var keyPath = key ?? "\(out)/keys/dev.key"
            if key == nil, !FileManager.default.fileExists(atPath: keyPath) {
                let pub = try SigningKeys.generate(base: String(keyPath.dropLast(4)))
                FileHandle.standardError.write(Data("mm-image: created development signing key \(keyPath) (key id \(pub.keyID)); use --key for releases\n".utf8))
            }
            keyPath = (keyPath as NSString).standardizingPath
            var size: Int64?
            if let diskSize {
                guard let parsed = ByteSize.parse(diskSize) else { throw ValidationError("--disk-size: expected a size like 4GiB, found \(diskSize)") }
                size = parsed
            }
            let epoch = try await SourceDateEpoch.resolve(logger: logger)
            let options = BuildOptions(
                definitionPath: image, hardwarePath: hardware, keyPath: keyPath, trustedKeyPaths: trust, version: version,
                buildNumber: buildNumber, sourceDateEpoch: epoch, outputDirectory: out, cacheDirectory: cache ?? "\(out)/cache",
                binariesDirectory: binaries ?? Self.ownDirectory(), recipesDirectory: recipes ?? Self.defaultRecipes(image),
                diskSize: size
            )
            let result = try await ImageBuild(options: options, logger: logger).run()
            let total = result.timings.reduce(0) { $0 + $1.1 }
            print(
                """
                built \(result.manifest.name) \(result.manifest.version) (build \(result.manifest.buildNumber)) for \(result.manifest.hardware) in \(String(format: "%.1f", total)) s
                  image     \(result.image) (\(ByteSize.format(result.manifest.disk.size)), sha256 \(result.manifest.disk.sha256))
                  bmap      \(result.blockMap)
                  bundle    \(result.bundle)
                  manifest  \(result.manifestPath) + .sig
                """
            )
        } catch let error as ValidationError {
            throw error
        } catch {
            throw fail(error)
        }
    }

    static func ownDirectory() -> String {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        return (exe as NSString).deletingLastPathComponent
    }

    static func defaultRecipes(_ image: String) -> String? {
        let dir = (((image as NSString).deletingLastPathComponent as NSString).deletingLastPathComponent as NSString)
            .appendingPathComponent("recipes")
        let path = dir.isEmpty ? "recipes" : dir
        return FileManager.default.fileExists(atPath: path) ? path : nil
    }
}

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

struct Verify: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check a disk image or update bundle: signature and every hash. Exit 0 only if all hold."
    )

    @Argument(help: "Disk image (.img) or update bundle (.mmb).") var artifact: String
    @Option(help: "Trusted Ed25519 public key (PEM), or a directory of *.pub.") var pubkey: String
    @Option(help: "Manifest of a disk image. Default: manifest.json beside it.") var manifest: String?

    func run() async throws {
        do {
            var isDirectory: ObjCBool = false
            _ = FileManager.default.fileExists(atPath: pubkey, isDirectory: &isDirectory)
            let keyring = isDirectory.boolValue ? try Keyring.load(directory: pubkey) : try Keyring.load(file: pubkey)
            if try Self.isTar(artifact) {
                let result = try Bundle.verify(path: artifact, keyring: keyring)
                print("ok  signature (\(Bundle.manifestName))")
                for payload in result.payloads { print("ok  payload \(payload.name): \(payload.size) bytes, sha256 \(payload.sha256.prefix(16))…") }
                print("verified bundle \(artifact): \(result.name) \(result.version) build \(result.buildNumber) for \(result.hardware)")
            } else {
                let manifestPath = manifest ?? ((artifact as NSString).deletingLastPathComponent as NSString).appendingPathComponent("manifest.json")
                let (result, checks) = try ImageVerifier(keyring: keyring).verify(imagePath: artifact, manifestPath: manifestPath)
                for check in checks { print("ok  \(check.name): \(check.detail)") }
                print("verified image \(artifact): \(result.name) \(result.version) build \(result.buildNumber) for \(result.hardware)")
            }
        } catch let error as VerificationError {
            FileHandle.standardError.write(Data("mm-image: verification FAILED: \(error)\n".utf8))
            throw ExitCode(1)
        } catch {
            throw fail(error)
        }
    }

    /// A POSIX tar has "ustar" at offset 257.
    static func isTar(_ path: String) throws -> Bool {
        let file = try RawFile.openForReading(path)
        guard try file.size() >= 512 else { return false }
        return try file.read(count: 5, at: 257) == Array("ustar".utf8)
    }
}

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
