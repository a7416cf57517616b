internal import CBlkid
import Foundation

/// What libblkid found in a byte range of a file or device: `TYPE`, `LABEL`, `UUID`, ... .
public struct ProbeResult: Sendable, Equatable {
    /// libblkid's name/value pairs, e.g. `["TYPE": "vfat", "LABEL": "MM-ESP"]`.
    public var values: [String: String]
    /// The filesystem type, if one was recognised.
    public var type: String? { values["TYPE"] }
}
