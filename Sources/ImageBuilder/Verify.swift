import ArgumentParser
import Foundation
import ImageBuilderCore
import Logging
import MicromirrorKit
import SystemKit

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
