internal import CBlkid
import Foundation

/// A libblkid failure.
public struct BlkidError: Error, Sendable, CustomStringConvertible {
    public var description: String
}
