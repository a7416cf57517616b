import Foundation
import NIOCore
import NIOPosix

/// The few fields only some answers carry.
enum ExtraField {
    case allow
    case location(String)
    case retryAfter(Int64)
    case contentRange(String)
    /// How a cache-mode project answered: HIT, MISS, REVALIDATED or STALE (with a `Warning`).
    case cache(String)

    func add(to head: inout ResponseHead) {
        switch self {
        case .allow: head.add("Allow", "GET, HEAD")
        case .location(let location): head.add("Location", location)
        case .retryAfter(let seconds): head.add("Retry-After", seconds)
        case .contentRange(let value): head.add("Content-Range", value)
        case .cache(let outcome):
            head.add("X-Cache", outcome)
            if outcome == "STALE" { head.add("Warning", "110 - \"Response is Stale\"") }
        }
    }
}
