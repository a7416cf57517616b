import Foundation

/// A strict HTTP/1.x request-head parser (RFC 9112) over the bytes a connection has received.
///
/// Strict where leniency is how requests get smuggled: lines end in CRLF only, no whitespace before a
/// field's colon, no obsolete line folding, no control characters, one Host, no Content-Length next to
/// Transfer-Encoding. It reads the whole head in one pass without copying it and keeps only the
/// fields the mirror acts on (`HTTPRequest`).
public enum HTTPRequestParser {
    public struct Limits: Sendable {
        /// Longest request target (414 beyond).
        public var maxTargetLength: Int
        /// Largest head, request line and fields together (431 beyond).
        public var maxHeadBytes: Int
        /// Most header fields (431 beyond).
        public var maxFields: Int

        public init(maxTargetLength: Int = 8192, maxHeadBytes: Int = 16 * 1024, maxFields: Int = 100) {
            self.maxTargetLength = maxTargetLength
            self.maxHeadBytes = maxHeadBytes
            self.maxFields = maxFields
        }
    }

    public enum Outcome: Sendable, Equatable {
        /// The head is not complete yet and nothing so far is wrong.
        case incomplete
        /// A whole head: the request and how many bytes it took (the body, if any, follows).
        case request(HTTPRequest, consumed: Int)
        /// Answer with this status and close; the text says what was wrong.
        case reject(HTTPStatus, String)
    }

    private static let cr = UInt8(ascii: "\r")
    private static let lf = UInt8(ascii: "\n")
    private static let space = UInt8(ascii: " ")
    private static let tab = UInt8(ascii: "\t")

    /// Parses the head at the start of `bytes`.
    public static func parse(_ bytes: UnsafeRawBufferPointer, limits: Limits) -> Outcome {
        var position = 0
        // RFC 9112 §2.2: empty lines before a request line are ignored (some clients send one after a body).
        while position + 1 < bytes.count, bytes[position] == cr, bytes[position + 1] == lf { position += 2 }
        let headStart = position

        guard let requestLineEnd = lineEnd(bytes, from: position) else {
            return incompleteRequestLine(bytes, from: position, limits: limits)
        }
        if case .bare = requestLineEnd.kind { return .reject(.badRequest, "a line ends in a bare LF") }
        var request: HTTPRequest
        switch requestLine(bytes, from: position, to: requestLineEnd.contentEnd, limits: limits) {
        case .success(let parsed): request = parsed
        case .failure(let rejection): return .reject(rejection.status, rejection.why)
        }
        position = requestLineEnd.next

        var fields = 0
        var hosts = 0
        var contentLength: Int64?
        var transferEncoding = false
        var connectionClose = false
        var connectionKeepAlive = false
        while true {
            guard let end = lineEnd(bytes, from: position) else {
                if case .reject(let status, let why) = bareLineFeed(bytes, from: position) { return .reject(status, why) }
                return bytes.count - headStart > limits.maxHeadBytes ? .reject(.requestHeaderFieldsTooLarge, "request head too large") : .incomplete
            }
            if end.next - headStart > limits.maxHeadBytes { return .reject(.requestHeaderFieldsTooLarge, "request head too large") }
            if case .bare = end.kind { return .reject(.badRequest, "a line ends in a bare LF") }
            if end.contentEnd == position {
                position = end.next
                break
            }
            fields += 1
            if fields > limits.maxFields { return .reject(.requestHeaderFieldsTooLarge, "more than \(limits.maxFields) header fields") }
            guard let field = headerField(bytes, from: position, to: end.contentEnd) else {
                return .reject(.badRequest, "malformed header field")
            }
            position = end.next
            let value = { String(decoding: UnsafeRawBufferPointer(rebasing: bytes[field.value]), as: UTF8.self) }
            switch knownField(bytes, field.name) {
            case .host:
                hosts += 1
                request.host = value()
            case .connection:
                for token in value().split(separator: ",") {
                    let t = token.trimmingCharacters(in: .whitespaces).lowercased()
                    if t == "close" { connectionClose = true } else if t == "keep-alive" { connectionKeepAlive = true }
                }
            case .contentLength:
                let text = value()
                guard !text.isEmpty, text.utf8.count <= 18, text.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), let length = Int64(text) else {
                    return .reject(.badRequest, "invalid Content-Length")
                }
                if let contentLength, contentLength != length { return .reject(.badRequest, "conflicting Content-Length fields") }
                contentLength = length
            case .transferEncoding: transferEncoding = true
            case .range: request.range = value()
            case .ifRange: request.ifRange = value()
            case .ifNoneMatch: request.ifNoneMatch = request.ifNoneMatch.map { $0 + ", " + value() } ?? value()
            case .ifModifiedSince: request.ifModifiedSince = value()
            case .accept: request.accept = value()
            case .referer: request.referer = value()
            case .userAgent: request.userAgent = value()
            case .other: break
            }
        }

        if hosts > 1 { return .reject(.badRequest, "more than one Host field") }
        if hosts == 0, request.version.minor >= 1 { return .reject(.badRequest, "HTTP/1.1 request without a Host field") }
        if transferEncoding {
            if contentLength != nil { return .reject(.badRequest, "both Transfer-Encoding and Content-Length") }
            if request.version.minor == 0 { return .reject(.badRequest, "Transfer-Encoding in an HTTP/1.0 request") }
            request.body = .chunked
        } else if let contentLength, contentLength > 0 {
            request.body = .length(contentLength)
        }
        request.keepAlive = request.version.minor >= 1 ? !connectionClose : (connectionKeepAlive && !connectionClose)
        return .request(request, consumed: position)
    }

    // MARK: - Lines

    private enum LineKind { case crlf, bare }

    /// Where the line starting at `from` ends: its content end (before CR LF) and the next line's start.
    private static func lineEnd(_ bytes: UnsafeRawBufferPointer, from: Int) -> (contentEnd: Int, next: Int, kind: LineKind)? {
        guard from < bytes.count, let base = bytes.baseAddress else { return nil }
        guard let found = memchr(base + from, Int32(lf), bytes.count - from) else { return nil }
        let index = base.distance(to: UnsafeRawPointer(found))
        if index > from, bytes[index - 1] == cr { return (index - 1, index + 1, .crlf) }
        return (index, index + 1, .bare)
    }

    /// Finds a bare LF in what has arrived of an unfinished head, to refuse it before the head ends.
    private static func bareLineFeed(_ bytes: UnsafeRawBufferPointer, from: Int) -> Outcome {
        guard let end = lineEnd(bytes, from: from), case .bare = end.kind else { return .incomplete }
        return .reject(.badRequest, "a line ends in a bare LF")
    }

    /// The request line has not ended yet: refuse it early when it is already too long or not HTTP.
    private static func incompleteRequestLine(_ bytes: UnsafeRawBufferPointer, from: Int, limits: Limits) -> Outcome {
        var index = from
        while index < bytes.count, isToken(bytes[index]) { index += 1 }
        if index < bytes.count, bytes[index] != space || index == from { return .reject(.badRequest, "malformed request line") }
        if bytes.count - from > limits.maxTargetLength + 32 { return .reject(.uriTooLong, "request target too long") }
        return .incomplete
    }

    private struct Rejection: Error {
        var status: HTTPStatus
        var why: String
    }

    /// `method SP request-target SP HTTP-version`, exactly.
    private static func requestLine(_ bytes: UnsafeRawBufferPointer, from: Int, to end: Int, limits: Limits) -> Result<HTTPRequest, Rejection> {
        var index = from
        while index < end, isToken(bytes[index]) { index += 1 }
        guard index > from, index < end, bytes[index] == space else { return .failure(Rejection(status: .badRequest, why: "malformed request line")) }
        let methodEnd = index
        index += 1
        let targetStart = index
        while index < end, bytes[index] != space {
            let byte = bytes[index]
            guard byte > 0x20, byte < 0x7f else { return .failure(Rejection(status: .badRequest, why: "invalid character in the request target")) }
            index += 1
        }
        let targetEnd = index
        if targetEnd - targetStart > limits.maxTargetLength { return .failure(Rejection(status: .uriTooLong, why: "request target too long")) }
        guard targetEnd > targetStart, index < end else { return .failure(Rejection(status: .badRequest, why: "malformed request line")) }
        index += 1
        // "HTTP/" DIGIT "." DIGIT and nothing more.
        let version = UnsafeRawBufferPointer(rebasing: bytes[index..<end])
        guard version.count == 8, version.starts(with: "HTTP/".utf8), version[6] == UInt8(ascii: "."),
            let major = digit(version[5]), let minor = digit(version[7])
        else { return .failure(Rejection(status: .badRequest, why: "malformed HTTP version")) }
        guard major == 1 else { return .failure(Rejection(status: .versionNotSupported, why: "only HTTP/1.0 and HTTP/1.1 are served here")) }

        let methodBytes = UnsafeRawBufferPointer(rebasing: bytes[from..<methodEnd])
        let method: HTTPRequest.Method =
            methodBytes.elementsEqual("GET".utf8) ? .get : methodBytes.elementsEqual("HEAD".utf8) ? .head : .other(String(decoding: methodBytes, as: UTF8.self))
        let target = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[targetStart..<targetEnd]), as: UTF8.self)
        return .success(HTTPRequest(method: method, target: target, version: (1, min(minor, 1)), keepAlive: true))
    }

    /// `name ":" OWS value OWS`; nil if the name is not a token, the line is folded, or the value has
    /// control characters.
    private static func headerField(_ bytes: UnsafeRawBufferPointer, from: Int, to end: Int) -> (name: Range<Int>, value: Range<Int>)? {
        var index = from
        while index < end, isToken(bytes[index]) { index += 1 }
        guard index > from, index < end, bytes[index] == UInt8(ascii: ":") else { return nil }
        let name = from..<index
        index += 1
        while index < end, bytes[index] == space || bytes[index] == tab { index += 1 }
        var valueEnd = end
        while valueEnd > index, bytes[valueEnd - 1] == space || bytes[valueEnd - 1] == tab { valueEnd -= 1 }
        for i in index..<valueEnd {
            let byte = bytes[i]
            if byte < 0x20 && byte != tab || byte == 0x7f { return nil }
        }
        return (name, index..<valueEnd)
    }

    // MARK: - Characters

    private enum KnownField {
        case host, connection, contentLength, transferEncoding, range, ifRange, ifNoneMatch, ifModifiedSince, accept, referer, userAgent, other
    }

    private static let known: [(String, KnownField)] = [
        ("host", .host), ("connection", .connection), ("content-length", .contentLength), ("transfer-encoding", .transferEncoding),
        ("range", .range), ("if-range", .ifRange), ("if-none-match", .ifNoneMatch), ("if-modified-since", .ifModifiedSince),
        ("accept", .accept), ("referer", .referer), ("user-agent", .userAgent),
    ]

    private static func knownField(_ bytes: UnsafeRawBufferPointer, _ name: Range<Int>) -> KnownField {
        let field = UnsafeRawBufferPointer(rebasing: bytes[name])
        for (candidate, kind) in known where candidate.utf8.count == field.count {
            // ASCII case folding: OR-ing 0x20 lowers letters and leaves '-' alone.
            if zip(candidate.utf8, field).allSatisfy({ $0 == $1 | 0x20 }) { return kind }
        }
        return .other
    }

    private static func digit(_ byte: UInt8) -> Int? {
        byte >= 0x30 && byte <= 0x39 ? Int(byte - 0x30) : nil
    }

    /// RFC 9110 tchar.
    private static let tokenTable: [Bool] = (0..<256).map { byte in
        if byte >= 0x30 && byte <= 0x39 || byte >= 0x41 && byte <= 0x5a || byte >= 0x61 && byte <= 0x7a { return true }
        return "!#$%&'*+-.^_`|~".utf8.contains(UInt8(byte))
    }

    @inline(__always) private static func isToken(_ byte: UInt8) -> Bool { tokenTable[Int(byte)] }
}
