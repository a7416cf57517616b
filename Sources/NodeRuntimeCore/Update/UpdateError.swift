/// An update step failed, and why, in words an operator can act on.
public struct UpdateError: Error, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
