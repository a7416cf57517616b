

/// A layout that does not fit.
public struct LayoutError: Error, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
