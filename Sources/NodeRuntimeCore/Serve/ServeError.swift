import Foundation
import SystemKit

/// The server could not start or serve, and why.
public struct ServeError: Error, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
