import ArgumentParser
import Foundation
import ImageBuilderCore
import MicromirrorKit
import SystemKit

struct Publish: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Publish a release on a channel: copy the bundle into DIR and write the signed channel index (NAME.json + NAME.json.sig).",
        discussion: """
            Re-run with a higher --rollout to widen a release to more nodes (the same nodes stay in); --withdraw stops it for the
            nodes that have not installed it. DIR is plain files: serve it with any static HTTP server, a mirror node included.
            """
    )

    @Argument(help: "The release's update bundle (.mmb), as mm-image build wrote it. Not needed with --withdraw.") var bundle: String?
    @Option(help: "Channel directory.") var channel: String
    @Option(help: "Channel name.") var name = "stable"
    @Option(help: "Percentage of nodes that take it (0-100).") var rollout = 100
    @Option(help: "Lowest running build that may update to it directly.") var minBuild: Int64?
    @Flag(help: "Allow nodes running a newer build to install this older one (rolling the fleet back).") var allowDowngrade = false
    @Flag(help: "Withdraw the channel's current release.") var withdraw = false
    @Option(help: "Signing key (PEM), the one the images trust.") var key: String

    func validate() throws {
        if !withdraw, bundle == nil { throw ValidationError("name the bundle to publish (or --withdraw)") }
        guard (0...100).contains(rollout) else { throw ValidationError("--rollout \(rollout): expected 0 to 100") }
    }

    func run() async throws {
        do {
            guard let pem = FileManager.default.contents(atPath: key) else { throw BuildError(stage: "publish", "cannot read the signing key \(key)") }
            let signing = try Ed25519PrivateKey(pem: Array(pem), source: key)
            let publisher = ChannelPublisher(directory: channel, channel: name, key: signing)
            let index: ChannelIndex
            if withdraw {
                index = try publisher.withdraw(keyring: Keyring(members: [.init(source: key, key: try signing.publicKey())]))
                print("withdrew build \(index.buildNumber) (\(index.version)) from \(publisher.indexPath)")
            } else {
                index = try publisher.publish(bundle: bundle!, rollout: rollout, minimumBuild: minBuild, allowDowngrade: allowDowngrade)
                print("published build \(index.buildNumber) (\(index.version), \(index.hardware)) on \(publisher.indexPath) to \(index.rollout) % of nodes")
            }
        } catch {
            throw fail(error)
        }
    }
}
