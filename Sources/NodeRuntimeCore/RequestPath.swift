/// A request target turned into safe path components under a mirror root, or the 4xx it deserves.
///
/// Decoding happens once, here: percent-escapes are decoded, then every component is checked, so an
/// encoded `..` (`%2e%2e`), an encoded slash or a NUL can never reach the filesystem.
public struct RequestPath: Sendable, Equatable {
    /// Decoded components, none empty, none `.` or `..`.
    public var components: [String]
    /// Whether the target ended in `/` (a directory listing was asked for).
    public var trailingSlash: Bool
    /// The raw query string, if any.
    public var query: String?

    public init(components: [String], trailingSlash: Bool, query: String?) {
        self.components = components
        self.trailingSlash = trailingSlash
        self.query = query
    }

    public enum Rejection: Error, Sendable, Equatable {
        /// 400: malformed encoding, NUL, `..`, backslash, not an origin-form target.
        case badRequest(String)
        /// 414: longer than the limit.
        case tooLong
    }

    /// Parses an origin-form request target (`/path?query`).
    public static func parse(_ target: String, maxLength: Int = 8192) -> Result<RequestPath, Rejection> {
        guard target.utf8.count <= maxLength else { return .failure(.tooLong) }
        guard target.first == "/" else { return .failure(.badRequest("the request target must start with /")) }
        var pathPart = Substring(target)
        var query: String?
        if let mark = target.firstIndex(of: "?") {
            pathPart = target[..<mark]
            query = String(target[target.index(after: mark)...])
        }
        if let hash = pathPart.firstIndex(of: "#") { pathPart = pathPart[..<hash] }
        var components: [String] = []
        for raw in pathPart.split(separator: "/", omittingEmptySubsequences: true) {
            guard let decoded = percentDecode(raw) else { return .failure(.badRequest("malformed percent-encoding")) }
            if decoded.contains(0) { return .failure(.badRequest("NUL in the path")) }
            if decoded.contains(UInt8(ascii: "/")) || decoded.contains(UInt8(ascii: "\\")) {
                return .failure(.badRequest("encoded slash or backslash in the path"))
            }
            guard let text = String(validating: decoded, as: UTF8.self) else { return .failure(.badRequest("path is not UTF-8")) }
            if text == "." { continue }
            if text == ".." { return .failure(.badRequest("'..' in the path")) }
            if text.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7f }) {
                return .failure(.badRequest("control character in the path"))
            }
            components.append(text)
        }
        return .success(RequestPath(components: components, trailingSlash: pathPart.hasSuffix("/"), query: query))
    }

    static func percentDecode(_ text: Substring) -> [UInt8]? {
        var out: [UInt8] = []
        out.reserveCapacity(text.utf8.count)
        var iterator = text.utf8.makeIterator()
        while let byte = iterator.next() {
            if byte == UInt8(ascii: "%") {
                guard let high = iterator.next().flatMap(hexValue), let low = iterator.next().flatMap(hexValue) else { return nil }
                out.append(high << 4 | low)
            } else {
                out.append(byte)
            }
        }
        return out
    }

    static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
        default: return nil
        }
    }

    /// rsync's in-flight files: `.~tmp~` directories (`--delay-updates`) and `.name.XXXXXX` temporaries.
    /// Never served, never listed.
    public static func isRsyncPartial(_ name: String) -> Bool {
        if name == ".~tmp~" { return true }
        guard name.hasPrefix("."), name.count > 8 else { return false }
        let suffix = name.suffix(7)
        guard suffix.first == "." else { return false }
        return suffix.dropFirst().allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber) } && name.dropFirst().dropLast(7).count > 0
    }
}
