@testable import NodeRuntimeCore
import Testing

/// The request-head parser on its own: what it keeps, where heads end, and every refusal.
@Suite("HTTP request parser")
struct HTTPRequestParserTests {
    static let limits = HTTPRequestParser.Limits(maxTargetLength: 64, maxHeadBytes: 256, maxFields: 8)

    static func parse(_ text: String, limits: HTTPRequestParser.Limits = limits) -> HTTPRequestParser.Outcome {
        Array(text.utf8).withUnsafeBytes { HTTPRequestParser.parse($0, limits: limits) }
    }

    static func status(_ text: String) -> Int? {
        if case .reject(let status, _) = parse(text) { return status.code }
        return nil
    }

    @Test("a GET with the fields the mirror uses")
    func fields() throws {
        let text = "GET /ubuntu/dists/noble/InRelease?x=1 HTTP/1.1\r\nHost: mirror\r\nUSER-agent: apt/2.7\r\nRange: bytes=0-9\r\n"
            + "If-None-Match: \"a\"\r\nif-none-match: \"b\"\r\nIf-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\nReferer: r\r\n"
            + "Accept: application/json\r\n\r\nNEXT"
        guard case .request(let request, let consumed) = Self.parse(text, limits: HTTPRequestParser.Limits()) else {
            Issue.record("not parsed: \(Self.parse(text))")
            return
        }
        #expect(consumed == text.utf8.count - 4)
        #expect(request.method == .get && request.target == "/ubuntu/dists/noble/InRelease?x=1" && request.version == (1, 1))
        #expect(request.keepAlive && request.body == .none)
        #expect(request.host == "mirror" && request.userAgent == "apt/2.7" && request.range == "bytes=0-9")
        #expect(request.ifNoneMatch == "\"a\", \"b\"")
        #expect(request.ifModifiedSince == "Sun, 06 Nov 1994 08:49:37 GMT" && request.referer == "r" && request.accept == "application/json")
    }

    @Test("keep-alive follows the version and the Connection field")
    func keepAlive() {
        func keptAlive(_ text: String) -> Bool? {
            if case .request(let request, _) = Self.parse(text) { return request.keepAlive }
            return nil
        }
        #expect(keptAlive("GET / HTTP/1.1\r\nHost: x\r\n\r\n") == true)
        #expect(keptAlive("GET / HTTP/1.1\r\nHost: x\r\nConnection: Close\r\n\r\n") == false)
        #expect(keptAlive("GET / HTTP/1.0\r\n\r\n") == false)
        #expect(keptAlive("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n") == true)
        #expect(keptAlive("HEAD / HTTP/1.1\r\nHost: x\r\nConnection: TE, close\r\n\r\n") == false)
    }

    @Test("an unfinished head is incomplete, not an error")
    func incomplete() {
        for text in ["", "G", "GET /a", "GET / HTTP/1.1\r", "GET / HTTP/1.1\r\nHost: x\r\n", "GET / HTTP/1.1\r\nHost: x\r\n\r"] {
            #expect(Self.parse(text) == .incomplete, "\(text.debugDescription)")
        }
    }

    @Test("leading empty lines are skipped; bodies are framed")
    func framing() {
        guard case .request(let request, let consumed) = Self.parse("\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello") else {
            Issue.record("not parsed")
            return
        }
        #expect(consumed == 4 + 46 && request.body == .length(5))
        if case .request(let chunked, _) = Self.parse("GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n") {
            #expect(chunked.body == .chunked)
        } else {
            Issue.record("chunked request not parsed")
        }
    }

    @Test(
        "refusals with the right status",
        arguments: [
            ("GET / HTTP/1.1\nHost: x\n\n", 400), ("GET / HTTP/1.1\r\nHost: x\n\r\n", 400), ("GET  / HTTP/1.1\r\nHost: x\r\n\r\n", 400),
            ("GET / HTTP/1.1 \r\nHost: x\r\n\r\n", 400), ("GET /\u{7f} HTTP/1.1\r\nHost: x\r\n\r\n", 400), ("GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505),
            ("GET / HTTP/1.x\r\nHost: x\r\n\r\n", 400), ("GET / http/1.1\r\nHost: x\r\n\r\n", 400), ("G@T / HTTP/1.1\r\nHost: x\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\n\r\n", 400), ("GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400), ("GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nHost: x\u{1}y\r\n\r\n", 400), ("GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400), ("GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", 400),
            ("GET / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400), (":\r\n\r\n", 400), ("\u{16}\u{3}\u{1} TLS hello", 400),
            ("GET /\(String(repeating: "a", count: 65)) HTTP/1.1\r\nHost: x\r\n\r\n", 414),
            ("GET /\(String(repeating: "a", count: 200))", 414),
            ("GET / HTTP/1.1\r\nHost: x\r\nX: \(String(repeating: "v", count: 300))\r\n\r\n", 431),
            ("GET / HTTP/1.1\r\nHost: x\r\nX: \(String(repeating: "v", count: 300))", 431),
            ("GET / HTTP/1.1\r\nHost: x\r\n" + (0..<9).map { "X-\($0): v\r\n" }.joined() + "\r\n", 431),
        ]
    )
    func refusals(text: String, status: Int) {
        #expect(Self.status(text) == status, "\(text.prefix(80).debugDescription): \(Self.parse(text))")
    }

    @Test("the access log line escapes what a client controls")
    func accessLogLine() {
        let entry = AccessLog.Entry(
            client: "2001:db8::1", time: "22/Nov/2026:02:00:00 +0000", method: "GET", target: "/a\"b", version: "HTTP/1.1", status: 206,
            bodyBytes: 1_234_567_890_123, referer: nil, userAgent: "evil\n\u{7f}ü"
        )
        #expect(
            AccessLog.format(entry)
                == #"2001:db8::1 - - [22/Nov/2026:02:00:00 +0000] "GET /a\x22b HTTP/1.1" 206 1234567890123 "-" "evil\x0A\x7F\xC3\xBC""#
        )
        var unparsed = entry
        unparsed.method = ""
        #expect(AccessLog.format(unparsed).contains("] \"-\" 206"))
    }

    @Test("ETags are inode-size-mtime in hex, as String(radix:) would write them")
    func etag() {
        for (inode, size, seconds, nanos) in [(UInt64(0), Int64(0), 0, 0), (0xabc, 4096, 1_763_700_000, 123_456_789), (UInt64.max, Int64.max, Int.max, 999_999_999)] {
            let info = MirrorFileResolver.FileInfo(size: size, modified: seconds, modifiedNanoseconds: nanos, inode: inode)
            let expected = "\"\(String(inode, radix: 16))-\(String(size, radix: 16))-\(String(seconds, radix: 16))\(String(nanos, radix: 16))\""
            #expect(MirrorResponder.etag(info) == expected)
        }
    }
}
