/// A sync could not run, and why, in words a mirror admin can act on.
public struct SyncError: Error, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
