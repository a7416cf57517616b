import Foundation
import MicromirrorKit
import SystemKit

/// Publishes a release on a channel: the bundle copied into the channel directory, then the
/// channel's index and its signature. Re-publishing the same bundle with another percentage widens
/// (or narrows) its rollout; `withdraw` stops it.
public struct ChannelPublisher {
    public var directory: String
    public var channel: String
    public var key: Ed25519PrivateKey
    public var now: Int64

    public init(directory: String, channel: String, key: Ed25519PrivateKey, now: Int64 = Int64(Date().timeIntervalSince1970)) {
        self.directory = directory
        self.channel = channel
        self.key = key
        self.now = now
    }

    public var indexPath: String { directory + "/" + channel + ".json" }

    /// Checks `bundle` (signed by our key, every payload's hash), copies it next to the index and
    /// writes the index naming it. Returns the index written.
    @discardableResult
    public func publish(bundle: String, rollout: Int, minimumBuild: Int64? = nil, allowDowngrade: Bool = false) throws -> ChannelIndex {
        guard (0...100).contains(rollout) else { throw BuildError(stage: "publish", "--rollout \(rollout): expected a percentage from 0 to 100") }
        guard ChannelPublisher.isChannelName(channel) else {
            throw BuildError(stage: "publish", "--name \(channel): a channel name is lower-case letters, digits and dashes")
        }
        // A release the nodes would refuse is refused here, before anything is published.
        let keyring = Keyring(members: [Keyring.Member(source: "the signing key", key: try key.publicKey())])
        let manifest: Manifest
        do { manifest = try Bundle.verify(path: bundle, keyring: keyring) } catch {
            throw BuildError(stage: "publish", "\(bundle) does not verify with the signing key: \(error)")
        }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let name = (bundle as NSString).lastPathComponent
        let target = directory + "/" + name
        let source = try RawFile.openForReading(bundle)
        let size = try source.size()
        let digest = try source.sha256(length: size)
        // Re-publishing the same bundle (widening a rollout) copies nothing.
        let existing = try? RawFile.openForReading(target)
        if (try? existing?.size()) != size || (try? existing?.sha256(length: size)) != digest {
            try Self.copy(bundle, to: target)
        }
        let index = ChannelIndex(
            channel: channel, name: manifest.name, version: manifest.version, buildNumber: manifest.buildNumber, hardware: manifest.hardware,
            bundle: name, size: size, sha256: digest, rollout: rollout, minimumBuild: minimumBuild, allowDowngrade: allowDowngrade, published: now
        )
        try write(index)
        return index
    }

    /// Marks the channel's current release withdrawn: nodes that have not installed it no longer take it.
    @discardableResult
    public func withdraw(keyring: Keyring) throws -> ChannelIndex {
        var index = try current(keyring: keyring)
        index.withdrawn = true
        index.published = now
        try write(index)
        return index
    }

    /// The channel's index as published, checked against `keyring`.
    public func current(keyring: Keyring) throws -> ChannelIndex {
        guard let bytes = FileManager.default.contents(atPath: indexPath), let signature = FileManager.default.contents(atPath: indexPath + ".sig") else {
            throw BuildError(stage: "publish", "\(indexPath): no published index (or its .sig) on this channel")
        }
        return try ChannelIndex.verified(Array(bytes), signature: Array(signature), keyring: keyring, source: indexPath)
    }

    /// The signature goes first: a node that fetches between the two writes sees a mismatch and
    /// tries again at its next poll, never an index that verifies with the wrong content.
    private func write(_ index: ChannelIndex) throws {
        let bytes = try index.canonicalBytes()
        try AtomicFile.write(try key.sign(bytes), to: indexPath + ".sig")
        try AtomicFile.write(bytes, to: indexPath)
    }

    static func copy(_ source: String, to target: String) throws {
        let temporary = target + ".tmp-\(getpid())"
        try? FileManager.default.removeItem(atPath: temporary)
        let from = try RawFile.openForReading(source)
        let to = try RawFile.openForWriting(temporary, create: true, truncate: true)
        try to.copySparse(from: from, to: 0)
        try to.truncate(to: try from.size())
        try to.sync()
        guard rename(temporary, target) == 0 else { throw FileError("rename into place", target) }
    }

    static func isChannelName(_ text: String) -> Bool {
        !text.isEmpty && text.count <= 63 && text.allSatisfy { $0.isASCII && ($0.isLowercase || $0.isNumber || $0 == "-") } && !text.hasPrefix("-")
    }
}
