internal import CParted
import Synchronization

/// A libparted failure, with the device and libparted's own messages.
public struct PartedError: Error, Sendable, CustomStringConvertible {
    public var operation: String
    public var device: String
    public var messages: [String]
    public var description: String {
        let detail = messages.isEmpty ? "" : ": " + messages.joined(separator: "; ")
        return "libparted: \(operation) on \(device) failed\(detail)"
    }
}
