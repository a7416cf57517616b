import Foundation

/// A release channel's index: what a node on the channel should run, signed by the NOC.
///
/// Published by `mm-image publish` as `CHANNEL.json` with a detached Ed25519 `CHANNEL.json.sig`
/// next to the bundle it names, as plain files any static HTTP server can serve (a mirror node
/// included). The signature covers the exact bytes; `canonicalBytes()` makes those bytes a pure
/// function of the values, as for the manifest.
public struct ChannelIndex: Codable, Sendable, Equatable {
    public static let currentFormat = 1

    public var format: Int
    /// The channel's name, e.g. `stable`.
    public var channel: String
    /// The release: image name, version, build number, hardware profile (from its manifest).
    public var name: String
    public var version: String
    public var buildNumber: Int64
    public var hardware: String
    /// The bundle's file name, relative to the index.
    public var bundle: String
    public var size: Int64
    public var sha256: String
    /// Percentage of nodes (0–100) that take this release; the same nodes every poll.
    public var rollout: Int
    /// The lowest running build that may update to this one directly (older ones wait for a
    /// release that allows them); nil for any.
    public var minimumBuild: Int64?
    /// A signed allowance to install a lower build than the running one (rolling the fleet back).
    public var allowDowngrade: Bool
    /// A withdrawn release is no longer taken by nodes that have not installed it.
    public var withdrawn: Bool
    /// When the NOC published this index (seconds since 1970, UTC).
    public var published: Int64

    public init(
        channel: String, name: String, version: String, buildNumber: Int64, hardware: String, bundle: String, size: Int64, sha256: String,
        rollout: Int, minimumBuild: Int64? = nil, allowDowngrade: Bool = false, withdrawn: Bool = false, published: Int64
    ) {
        self.format = Self.currentFormat
        self.channel = channel
        self.name = name
        self.version = version
        self.buildNumber = buildNumber
        self.hardware = hardware
        self.bundle = bundle
        self.size = size
        self.sha256 = sha256
        self.rollout = rollout
        self.minimumBuild = minimumBuild
        self.allowDowngrade = allowDowngrade
        self.withdrawn = withdrawn
        self.published = published
    }

    /// The exact bytes written to `CHANNEL.json` and signed.
    public func canonicalBytes() throws -> [UInt8] {
        try CanonicalJSON.bytes(self)
    }

    /// Checks `signature` over `bytes` against `keyring`, then parses; `source` names the index in errors.
    public static func verified(_ bytes: [UInt8], signature: [UInt8], keyring: Keyring, source: String) throws -> ChannelIndex {
        try keyring.verify(signature: signature, message: bytes, what: source)
        let index: ChannelIndex
        do {
            index = try JSONDecoder().decode(ChannelIndex.self, from: Data(bytes))
        } catch {
            throw VerificationError(check: "channel index", message: "\(source) is not a channel index: \(error)")
        }
        guard index.format == currentFormat else {
            throw VerificationError(check: "channel index", message: "\(source) has format \(index.format); this node reads format \(currentFormat)")
        }
        guard (0...100).contains(index.rollout) else {
            throw VerificationError(check: "channel index", message: "\(source): rollout \(index.rollout) is not a percentage")
        }
        guard !index.bundle.isEmpty, !index.bundle.contains("/"), !index.bundle.hasPrefix(".") else {
            throw VerificationError(check: "channel index", message: "\(source): bundle \"\(index.bundle)\" must be a plain file name next to the index")
        }
        return index
    }
}
