import ArgumentParser
import Foundation
import ImageBuilderCore
import Logging
import MicromirrorKit
import SystemKit

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
