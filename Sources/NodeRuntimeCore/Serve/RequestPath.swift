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
        var target = target
        return target.withUTF8 { parse(bytes: $0) }
    }

    private static func parse(bytes: UnsafeBufferPointer<UInt8>) -> Result<RequestPath, Rejection> {
        guard bytes.first == UInt8(ascii: "/") else { return .failure(.badRequest("the request target must start with /")) }
        var pathEnd = bytes.count
        var query: String?
        if let mark = bytes.firstIndex(of: UInt8(ascii: "?")) {
            pathEnd = mark
            query = String(decoding: UnsafeBufferPointer(rebasing: bytes[(mark + 1)...]), as: UTF8.self)
        }
        if let hash = bytes[..<pathEnd].firstIndex(of: UInt8(ascii: "#")) { pathEnd = hash }
        var components: [String] = []
        var start = 0
        while start < pathEnd {
            var end = start
            while end < pathEnd, bytes[end] != UInt8(ascii: "/") { end += 1 }
            defer { start = end + 1 }
            if end == start { continue }
            let raw = UnsafeBufferPointer(rebasing: bytes[start..<end])
            let component: String
            switch raw.contains(UInt8(ascii: "%")) ? text(of: percentDecode(raw)) : text(of: raw) {
            case .success(let text): component = text
            case .failure(let rejection): return .failure(rejection)
            }
            if component == "." { continue }
            if component == ".." { return .failure(.badRequest("'..' in the path")) }
            components.append(component)
        }
        let trailingSlash = pathEnd > 0 && bytes[pathEnd - 1] == UInt8(ascii: "/")
        return .success(RequestPath(components: components, trailingSlash: trailingSlash, query: query))
    }

    /// A component's text. NUL, slashes or backslashes (encoded ones survive decoding) and control
    /// characters have no place in it; bytes of multi-byte UTF-8 are all >= 0x80, so checking bytes
    /// suffices, and all-ASCII text (nearly every path) needs no UTF-8 validation.
    private static func text<C: Collection<UInt8>>(of component: C?) -> Result<String, Rejection> {
        guard let component else { return .failure(.badRequest("malformed percent-encoding")) }
        var ascii = true
        for byte in component {
            switch byte {
            case 0: return .failure(.badRequest("NUL in the path"))
            case UInt8(ascii: "/"), UInt8(ascii: "\\"): return .failure(.badRequest("encoded slash or backslash in the path"))
            case 1..<0x20, 0x7f: return .failure(.badRequest("control character in the path"))
            case 0x80...: ascii = false
            default: continue
            }
        }
        if ascii { return .success(String(decoding: component, as: UTF8.self)) }
        guard let text = String(validating: component, as: UTF8.self) else { return .failure(.badRequest("path is not UTF-8")) }
        return .success(text)
    }

    static func percentDecode<C: Collection<UInt8>>(_ text: C) -> [UInt8]? {
        var out: [UInt8] = []
        out.reserveCapacity(text.count)
        var iterator = text.makeIterator()
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
