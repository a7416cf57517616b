import Foundation
import Logging
import MicromirrorKit
import SystemKit

/// Everything `mm-image build` needs to know.
public struct BuildOptions: Sendable {
    public var definitionPath: String
    public var hardwarePath: String
    public var keyPath: String
    /// Extra public keys to trust in the image (the signing key's own is always trusted).
    public var trustedKeyPaths: [String]
    public var version: String
    public var buildNumber: Int64?
    public var sourceDateEpoch: Int64
    public var outputDirectory: String
    public var cacheDirectory: String
    /// Where mm-image, mm-firstboot and mm-node (release, static stdlib) are.
    public var binariesDirectory: String
    public var recipesDirectory: String?
    public var diskSize: Int64?

    public init(
        definitionPath: String, hardwarePath: String, keyPath: String, trustedKeyPaths: [String] = [],
        version: String, buildNumber: Int64? = nil, sourceDateEpoch: Int64, outputDirectory: String,
        cacheDirectory: String, binariesDirectory: String, recipesDirectory: String?, diskSize: Int64? = nil
    ) {
        self.definitionPath = definitionPath
        self.hardwarePath = hardwarePath
        self.keyPath = keyPath
        self.trustedKeyPaths = trustedKeyPaths
        self.version = version
        self.buildNumber = buildNumber
        self.sourceDateEpoch = sourceDateEpoch
        self.outputDirectory = outputDirectory
        self.cacheDirectory = cacheDirectory
        self.binariesDirectory = binariesDirectory
        self.recipesDirectory = recipesDirectory
        self.diskSize = diskSize
    }
}
