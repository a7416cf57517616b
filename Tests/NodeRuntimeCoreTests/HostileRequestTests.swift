import Foundation
import NodeRuntimeCore
import MicromirrorTestSupport
import Testing

/// Traversal, encoding and malformed requests: none may read outside the root, each gets the right 4xx.
@Suite("Hostile requests")
struct HostileRequestTests {
    static let secret = "TOP-SECRET-\(UUID().uuidString)"

    /// (name, raw request bytes, expected status or nil for "any 4xx")
    static var corpus: [(String, String, Int?)] {
        var cases: [(String, String, Int?)] = []
        func get(_ target: String, _ status: Int?) { cases.append(("GET \(target)", "GET \(target) HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", status)) }
        for target in [
            "/../secret.txt", "/ubuntu/../../secret.txt", "/./../secret.txt", "/ubuntu/pool/../../../secret.txt", "/..", "/../",
            "/%2e%2e/secret.txt", "/%2E%2E/secret.txt", "/.%2e/secret.txt", "/%2e./secret.txt", "/ubuntu/%2e%2e/%2e%2e/secret.txt",
            "/%2e%2e%2fsecret.txt", "/ubuntu%2f..%2f..%2fsecret.txt", "/..%2fsecret.txt", "/..%5csecret.txt", "/ubuntu/..%5c..%5csecret.txt",
            "/%00", "/ubuntu%00/InRelease", "/secret.txt%00.iso", "/%c0%ae%c0%ae/secret.txt", "/%ff%fe", "/%", "/%zz", "/%2",
            "/ubuntu/%0d%0aSet-Cookie:%20x", "/%7f",
        ] {
            get(target, 400)
        }
        for target in [
            "/escape", "/escape/secret.txt", "/ubuntu/escape-dir/secret.txt", "/ubuntu/.~tmp~/big.iso", "/ubuntu/pool/.big.iso.Xy12Ab",
            "/ubuntu/.~tmp~/", "/nonexistent", "/ubuntu/pool/main/nonexistent.iso", "/etc/passwd", "//etc/passwd", "/proc/self/environ",
        ] {
            get(target, 404)
        }
        get("/" + String(repeating: "a", count: 9000), 414)
        get("/ubuntu/" + String(repeating: "x/", count: 5000), 414)
        cases.append(("absolute URI outside", "GET http://evil.example/../../secret.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 400))
        cases.append(("asterisk target", "GET * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 400))
        cases.append(("POST", "POST /ubuntu/ HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc", 405))
        cases.append(("PUT", "PUT /x HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", 405))
        cases.append(("DELETE", "DELETE /ubuntu/dists/noble/InRelease HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 405))
        cases.append(("huge header", "GET / HTTP/1.1\r\nHost: x\r\nX-Big: \(String(repeating: "b", count: 20000))\r\nConnection: close\r\n\r\n", 431))
        cases.append(("many headers", "GET / HTTP/1.1\r\nHost: x\r\n" + (0..<2000).map { "X-\($0): v\r\n" }.joined() + "Connection: close\r\n\r\n", 431))
        cases.append(("garbage request line", "\u{1}\u{2}\u{3} nonsense\r\n\r\n", 400))
        cases.append(("bad version", "GET / HTTP/9.9x\r\nHost: x\r\n\r\n", 400))
        cases.append(("space in target", "GET /a b/c HTTP/1.1\r\nHost: x\r\n\r\n", 400))
        cases.append(("bare LF smuggling", "GET / HTTP/1.1\nHost: x\nTransfer-Encoding: chunked\nContent-Length: 5\n\n0\n\n", 400))
        cases.append(("NUL in header", "GET / HTTP/1.1\r\nHost: x\u{0}y\r\n\r\n", 400))
        return cases
    }

    @Test("at least 50 hostile requests: the right 4xx, never the secret")
    func corpus() async throws {
        #expect(Self.corpus.count >= 50)
        let outside = NSTemporaryDirectory() + "mm-outside-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: outside, withIntermediateDirectories: true)
        try Self.secret.write(toFile: outside + "/secret.txt", atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: outside) }
        let server = try await LiveServer.start { root in
            try ServeTests.populate(root)
            // The secret sits next to the root; symlinks inside point at it.
            try Self.secret.write(toFile: (root as NSString).deletingLastPathComponent + "/secret.txt", atomically: true, encoding: .utf8)
            try FileManager.default.createSymbolicLink(atPath: root + "/escape", withDestinationPath: outside + "/secret.txt")
            try FileManager.default.createSymbolicLink(atPath: root + "/ubuntu/escape-dir", withDestinationPath: outside)
        }
        defer { try? FileManager.default.removeItem(atPath: (server.root as NSString).deletingLastPathComponent + "/secret.txt") }
        for (name, request, expected) in Self.corpus {
            let answer = try rawExchange(port: server.port, Array(request.utf8))
            #expect(!answer.contains(Self.secret), "\(name) leaked the secret")
            let status = Int(answer.split(separator: " ").dropFirst().first ?? "") ?? 0
            if let expected {
                #expect(status == expected, "\(name): expected \(expected), got \(answer.prefix(120))")
            } else {
                #expect((400..<500).contains(status), "\(name): \(answer.prefix(120))")
            }
        }
        // The server is still healthy afterwards.
        let ok = try rawExchange(port: server.port, Array("GET /ubuntu/dists/noble/InRelease HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".utf8))
        #expect(ok.hasPrefix("HTTP/1.1 200"))
        await server.stop()
    }

    @Test("request paths: decoding and rejection rules")
    func paths() throws {
        #expect(try RequestPath.parse("/a/./b//c/").get() == RequestPath(components: ["a", "b", "c"], trailingSlash: true, query: nil))
        #expect(try RequestPath.parse("/a%20b?format=json").get() == RequestPath(components: ["a b"], trailingSlash: false, query: "format=json"))
        #expect(RequestPath.parse("/a/../b") == .failure(.badRequest("'..' in the path")))
        #expect(RequestPath.parse("x") == .failure(.badRequest("the request target must start with /")))
        #expect(RequestPath.isRsyncPartial(".~tmp~") && RequestPath.isRsyncPartial(".big.iso.Xy12Ab"))
        #expect(!RequestPath.isRsyncPartial(".treeinfo") && !RequestPath.isRsyncPartial("big.iso") && !RequestPath.isRsyncPartial(".abcdefg"))
    }

    @Test("HTTP dates in all three forms")
    func dates() {
        #expect(HTTPDate.parse("Sun, 06 Nov 1994 08:49:37 GMT") == 784_111_777)
        #expect(HTTPDate.parse("Sunday, 06-Nov-94 08:49:37 GMT") == 784_111_777)
        #expect(HTTPDate.parse("Sun Nov  6 08:49:37 1994") == 784_111_777)
        #expect(HTTPDate.format(784_111_777) == "Sun, 06 Nov 1994 08:49:37 GMT")
        #expect(HTTPDate.parse("yesterday") == nil)
    }
}
