import SystemKit

/// A malformed or unexpected GPT.
public struct GPTError: Error, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
