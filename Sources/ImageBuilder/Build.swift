import ArgumentParser
import Foundation
import ImageBuilderCore
import Logging
import MicromirrorKit
import SystemKit

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
