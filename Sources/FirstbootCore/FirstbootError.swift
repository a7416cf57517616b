/// A first-boot step could not be done, and why.
public struct FirstbootError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
