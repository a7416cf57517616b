import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

public struct AccessLogError: Error, CustomStringConvertible {
    public var path: String
    public var code: Int32
    public var description: String { "cannot open access log \(path): \(String(cString: strerror(code)))" }
}
