internal import CArchive
import Foundation

/// A libarchive failure: the operation, the archive file and libarchive's message.
public struct ArchiveError: Error, Sendable, CustomStringConvertible {
    public var operation: String
    public var path: String
    public var message: String
    public var description: String { "\(operation) \(path): \(message)" }

    init(_ operation: String, _ path: String, _ archive: OpaquePointer?) {
        self.operation = operation
        self.path = path
        self.message = archive.flatMap { archive_error_string($0) }.map { String(cString: $0) } ?? "unknown libarchive error"
    }

    public init(operation: String, path: String, message: String) {
        self.operation = operation
        self.path = path
        self.message = message
    }
}
