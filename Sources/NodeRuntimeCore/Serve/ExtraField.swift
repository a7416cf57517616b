import Foundation
import NIOCore
import NIOPosix

/// The few fields only some answers carry.
enum ExtraField {
    case allow
    case location(String)
    case retryAfter(Int64)

    func add(to head: inout ResponseHead) {
        switch self {
        case .allow: head.add("Allow", "GET, HEAD")
        case .location(let location): head.add("Location", location)
        case .retryAfter(let seconds): head.add("Retry-After", seconds)
        }
    }
}
