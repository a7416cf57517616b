import Foundation
import MicromirrorKit
import SystemKit

/// Whether a node takes the release a channel index offers: a pure decision over the index, the
/// running image, the node's identity and what it refused before. Every "no" says why.
public enum UpdateDecision: Sendable, Equatable {
    case install
    case upToDate
    case withdrawn
    case otherHardware(String)
    /// The running build is older than the release allows to update from.
    case runningTooOld(minimum: Int64)
    /// A lower build than the running one, without the channel's signed allowance.
    case downgradeRefused
    /// This node installed it before and it did not come up healthy.
    case rolledBackBefore
    /// Outside the rollout: `bucket` (0–99, stable for this node and build) is not below `percent`.
    case outsideRollout(bucket: Int, percent: Int)

    public static func decide(index: ChannelIndex, running: ImageIdentity, nodeID: String, rolledBack: Set<Int64>) -> UpdateDecision {
        if index.withdrawn { return .withdrawn }
        if index.hardware != running.hardware { return .otherHardware(index.hardware) }
        if index.buildNumber == running.buildNumber { return .upToDate }
        if index.buildNumber < running.buildNumber, !index.allowDowngrade { return .downgradeRefused }
        if let minimum = index.minimumBuild, running.buildNumber < minimum { return .runningTooOld(minimum: minimum) }
        if rolledBack.contains(index.buildNumber) { return .rolledBackBefore }
        let bucket = rolloutBucket(nodeID: nodeID, buildNumber: index.buildNumber)
        if bucket >= index.rollout { return .outsideRollout(bucket: bucket, percent: index.rollout) }
        return .install
    }

    /// The node's place (0–99) in the rollout of `buildNumber`: from a hash of its identity and the
    /// build, so a 10 % rollout is the same 10 % of nodes at every poll, widening keeps them in, and
    /// each release picks its first nodes afresh.
    public static func rolloutBucket(nodeID: String, buildNumber: Int64) -> Int {
        let digest = SHA256Hasher.hex(of: Array("\(nodeID)/\(buildNumber)".utf8))
        let value = UInt64(digest.prefix(16), radix: 16) ?? 0
        return Int(value % 100)
    }

    public var description: String {
        switch self {
        case .install: "install"
        case .upToDate: "up to date"
        case .withdrawn: "the release was withdrawn"
        case .otherHardware(let hardware): "the release is for \(hardware)"
        case .runningTooOld(let minimum): "the release updates builds \(minimum) and newer only"
        case .downgradeRefused: "the release is older than the running build and the channel does not allow a downgrade"
        case .rolledBackBefore: "this build did not come up healthy here before"
        case .outsideRollout(let bucket, let percent): "outside the rollout (this node is at \(bucket) %, the release goes to \(percent) %)"
        }
    }
}
