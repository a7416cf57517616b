/// A check of a signed artifact failed: which check, and what exactly did not hold.
public struct VerificationError: Error, Sendable, CustomStringConvertible {
    /// The check that failed: `signature`, `manifest`, `disk`, `partition mm-root-a`, `payload root.erofs`, ...
    public var check: String
    public var message: String

    public init(check: String, message: String) {
        self.check = check
        self.message = message
    }

    public var description: String { "\(check): \(message)" }
}
