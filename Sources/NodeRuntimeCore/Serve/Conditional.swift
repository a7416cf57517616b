import Foundation

/// Conditional requests (RFC 9110 §13): If-None-Match, If-Modified-Since, If-Range.
enum Conditional {
    /// True when the client's copy is current (answer 304).
    static func notModified(_ request: HTTPRequest, etag: String, mtime: Int) -> Bool {
        if let inm = request.ifNoneMatch {
            // Weak comparison for If-None-Match: W/"x" matches "x".
            let tags = inm.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            return tags.contains { $0 == "*" || $0 == etag || $0 == "W/" + etag }
        }
        if let ims = request.ifModifiedSince, let since = HTTPDate.parse(ims) {
            return mtime <= since
        }
        return false
    }

    /// If-Range: serve the range only if the validator still matches (strong ETag or exact date).
    static func ifRangeHolds(_ request: HTTPRequest, etag: String, lastModified: String) -> Bool {
        guard let value = request.ifRange?.trimmingCharacters(in: .whitespaces) else { return true }
        if value.hasPrefix("\"") { return value == etag }
        return value == lastModified
    }
}
