import Foundation
import Logging
import MicromirrorKit
import SystemKit

/// What a build wrote.
public struct BuildResult: Sendable {
    public var manifest: Manifest
    public var directory: String
    public var image: String
    public var blockMap: String
    public var bundle: String
    public var manifestPath: String
    public var rootfsFromCache: Bool
    public var timings: [(String, Double)]
}
