import Foundation
import NIOCore
import NIOPosix
import NodeRuntimeCore
import MicromirrorTestSupport
import Testing

/// The mirror server, live on loopback, against real clients.
@Suite("Serving with real clients", .serialized)
struct ServeTests {
    static let payload: [UInt8] = (0..<3_000_000).map { UInt8(truncatingIfNeeded: $0 &* 2_654_435_761 >> 13) }

    static func populate(_ root: String) throws {
        let fm = FileManager.default
        for dir in ["ubuntu/pool/main", "ubuntu/dists/noble", "fedora/repodata", "ubuntu/.~tmp~"] {
            try fm.createDirectory(atPath: root + "/" + dir, withIntermediateDirectories: true)
        }
        try Data(payload).write(to: URL(fileURLWithPath: root + "/ubuntu/pool/main/big.iso"))
        try "Origin: Ubuntu\n".write(toFile: root + "/ubuntu/dists/noble/InRelease", atomically: true, encoding: .utf8)
        try "<repomd/>\n".write(toFile: root + "/fedora/repodata/repomd.xml", atomically: true, encoding: .utf8)
        try "partial\n".write(toFile: root + "/ubuntu/.~tmp~/big.iso", atomically: true, encoding: .utf8)
        try "partial\n".write(toFile: root + "/ubuntu/pool/main/.big.iso.Xy12Ab", atomically: true, encoding: .utf8)
        try "x\n".write(toFile: root + "/ubuntu/pool/main/pkg_1.0_amd64.deb", atomically: true, encoding: .utf8)
        try fm.createSymbolicLink(atPath: root + "/ubuntu/current", withDestinationPath: "dists/noble")
    }

    func withServer(_ configure: (inout ServeConfiguration) -> Void = { _ in }, _ body: (LiveServer) async throws -> Void) async throws {
        let server = try await LiveServer.start(configure: configure, populate: Self.populate)
        do { try await body(server) } catch {
            await server.stop()
            throw error
        }
        await server.stop()
    }

    func curl(_ args: [String]) async throws -> String {
        let result = try await run("curl", ["-sS", "--max-time", "20"] + args)
        return result.output
    }

    @Test("GET, HEAD, types, caching, ETag and Last-Modified")
    func basics() async throws {
        try await withServer { server in
            let dir = NSTemporaryDirectory() + "dl-\(UUID().uuidString)"
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            _ = try await curl(["-o", dir + "/big.iso", server.base + "/ubuntu/pool/main/big.iso"])
            #expect(try Data(contentsOf: URL(fileURLWithPath: dir + "/big.iso")) == Data(Self.payload))
            let head = try await curl(["-I", server.base + "/ubuntu/pool/main/big.iso"])
            #expect(head.contains("HTTP/1.1 200 OK"))
            #expect(head.contains("Content-Length: 3000000"))
            #expect(head.contains("Content-Type: application/octet-stream"))
            #expect(head.contains("Accept-Ranges: bytes"))
            #expect(head.contains("Cache-Control: public, max-age=86400"))
            #expect(head.contains("ETag: \"") && head.contains("Last-Modified: "))
            let meta = try await curl(["-I", server.base + "/ubuntu/dists/noble/InRelease"])
            #expect(meta.contains("Cache-Control: max-age=60, must-revalidate"))
            let repomd = try await curl(["-I", server.base + "/fedora/repodata/repomd.xml"])
            #expect(repomd.contains("Cache-Control: max-age=60, must-revalidate") && repomd.contains("Content-Type: application/xml"))
            await #expect(try curl(["-I", server.base + "/ubuntu/pool/main/pkg_1.0_amd64.deb"]).contains("Content-Type: application/octet-stream"))
            // A symlink inside the root is followed.
            await #expect(try curl([server.base + "/ubuntu/current/InRelease"]) == "Origin: Ubuntu\n")
            // A directory without its slash is redirected.
            await #expect(try curl(["-I", server.base + "/ubuntu"]).contains("Location: /ubuntu/"))
        }
    }

    @Test("ranges: 206, suffix, open-ended, 416, If-Range, and resume with curl -C -")
    func ranges() async throws {
        try await withServer { server in
            let url = server.base + "/ubuntu/pool/main/big.iso"
            let part = try await curl(["-D", "-", "-o", "/dev/null", "-r", "1000-1999", url])
            #expect(part.contains("206 Partial Content") && part.contains("Content-Range: bytes 1000-1999/3000000") && part.contains("Content-Length: 1000"))
            let suffix = try await curl(["-D", "-", "-o", "/dev/null", "-H", "Range: bytes=-500", url])
            #expect(suffix.contains("Content-Range: bytes 2999500-2999999/3000000"))
            let beyond = try await curl(["-D", "-", "-o", "/dev/null", "-H", "Range: bytes=5000000-", url])
            #expect(beyond.contains("416") && beyond.contains("Content-Range: bytes */3000000"))
            let etag = try await #require(try curl(["-I", url]).split(separator: "\r\n").first { $0.hasPrefix("ETag: ") }).dropFirst(6)
            let ifRangeOK = try await curl(["-D", "-", "-o", "/dev/null", "-r", "0-9", "-H", "If-Range: \(etag)", url])
            #expect(ifRangeOK.contains("206"))
            let ifRangeStale = try await curl(["-D", "-", "-o", "/dev/null", "-r", "0-9", "-H", "If-Range: \"stale\"", url])
            #expect(ifRangeStale.contains("200 OK") && ifRangeStale.contains("Content-Length: 3000000"))
            // Resume a download cut at 1 MB.
            let dir = NSTemporaryDirectory() + "resume-\(UUID().uuidString)"
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            try Data(Self.payload.prefix(1_000_000)).write(to: URL(fileURLWithPath: dir + "/big.iso"))
            _ = try await curl(["-C", "-", "-o", dir + "/big.iso", url])
            #expect(try Data(contentsOf: URL(fileURLWithPath: dir + "/big.iso")) == Data(Self.payload))
            let log = try await server.accessLogText { $0.contains("\" 206 2000000 ") }
            #expect(log.contains("\" 206 2000000 "), "the resumed transfer logs the bytes sent: \(log)")
        }
    }

    @Test("conditional requests: If-None-Match and If-Modified-Since answer 304")
    func conditionals() async throws {
        try await withServer { server in
            let url = server.base + "/ubuntu/dists/noble/InRelease"
            let head = try await curl(["-I", url])
            let etag = try #require(head.split(separator: "\r\n").first { $0.hasPrefix("ETag: ") }).dropFirst(6)
            let lastModified = try #require(head.split(separator: "\r\n").first { $0.hasPrefix("Last-Modified: ") }).dropFirst(15)
            await #expect(try curl(["-I", "-H", "If-None-Match: \(etag)", url]).contains("304 Not Modified"))
            await #expect(try curl(["-I", "-H", "If-None-Match: \"other\"", url]).contains("200 OK"))
            await #expect(try curl(["-I", "-H", "If-Modified-Since: \(lastModified)", url]).contains("304 Not Modified"))
            await #expect(try curl(["-I", "-H", "If-Modified-Since: Sat, 01 Jan 2000 00:00:00 GMT", url]).contains("200 OK"))
            // wget's timestamping uses If-Modified-Since too.
            let dir = NSTemporaryDirectory() + "wget-\(UUID().uuidString)"
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            let first = try await run("wget", ["-q", "-N", url], directory: dir)
            #expect(first.status == 0, "\(first.output)")
            let second = try await run("wget", ["-N", url], directory: dir)
            #expect(second.output.contains("304") || second.output.contains("not retrieving"), "\(second.output)")
        }
    }

    @Test("directory listings: HTML naming the sponsor, JSON, without dotfiles or rsync partials")
    func listings() async throws {
        try await withServer({ $0.sponsor = "example-isp.mm.fcix.net" }) { server in
            let html = try await curl([server.base + "/ubuntu/pool/main/"])
            #expect(html.contains("Index of /ubuntu/pool/main/") && html.contains("big.iso") && html.contains("example-isp.mm.fcix.net"))
            #expect(!html.contains(".big.iso.Xy12Ab"))
            let json = try await curl([server.base + "/ubuntu/?format=json"])
            let object = try JSONSerialization.jsonObject(with: Data(json.utf8)) as! [String: Any]
            let names = (object["entries"] as! [[String: Any]]).map { $0["name"] as! String }
            #expect(names == ["current", "dists", "pool"])
            await #expect(try curl(["-H", "Accept: application/json", server.base + "/"]).contains("\"name\":\"ubuntu\""))
        }
    }

    @Test("aria2c with 8 connections reassembles the file exactly")
    func aria2() async throws {
        try await withServer { server in
            let dir = NSTemporaryDirectory() + "aria-\(UUID().uuidString)"
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            let result = try await run("aria2c", ["-q", "-x", "8", "-s", "8", "-k", "1M", "--allow-overwrite=true", "-d", dir, "-o", "big.iso", server.base + "/ubuntu/pool/main/big.iso"])
            #expect(result.status == 0, "\(result.output)")
            #expect(try Data(contentsOf: URL(fileURLWithPath: dir + "/big.iso")) == Data(Self.payload))
        }
    }

    @Test("apt-get update and apt-get download against a generated Debian repository")
    func apt() async throws {
        try await withServer { server in
            let repo = server.root + "/debian"
            try FileManager.default.createDirectory(atPath: repo + "/build/hello/DEBIAN", withIntermediateDirectories: true)
            try "Package: mm-hello\nVersion: 1.0\nArchitecture: all\nMaintainer: t <t@example.org>\nDescription: test\n"
                .write(toFile: repo + "/build/hello/DEBIAN/control", atomically: true, encoding: .utf8)
            await #expect(try run("dpkg-deb", ["--build", repo + "/build/hello", repo + "/mm-hello_1.0_all.deb"]).status == 0)
            try FileManager.default.removeItem(atPath: repo + "/build")
            let packages = try await run("apt-ftparchive", ["packages", "."], directory: repo)
            try packages.output.write(toFile: repo + "/Packages", atomically: true, encoding: .utf8)
            let release = try await run("apt-ftparchive", ["release", "."], directory: repo)
            try release.output.write(toFile: repo + "/Release", atomically: true, encoding: .utf8)

            let state = NSTemporaryDirectory() + "apt-\(UUID().uuidString)"
            for dir in ["lists/partial", "cache/archives/partial", "etc", "out"] {
                try FileManager.default.createDirectory(atPath: state + "/" + dir, withIntermediateDirectories: true)
            }
            try "deb [trusted=yes] \(server.base)/debian ./\n".write(toFile: state + "/etc/sources.list", atomically: true, encoding: .utf8)
            let options = [
                "-o", "Dir::Etc::SourceList=\(state)/etc/sources.list", "-o", "Dir::Etc::SourceParts=/nonexistent",
                "-o", "Dir::State::Lists=\(state)/lists", "-o", "Dir::Cache=\(state)/cache", "-o", "APT::Sandbox::User=root",
                "-o", "Dir::State::Status=/var/lib/dpkg/status", "-o", "Acquire::Languages=none",
            ]
            let update = try await run("apt-get", options + ["update"])
            #expect(update.status == 0 && !update.output.contains("Err:"), "\(update.output)")
            let download = try await run("apt-get", options + ["download", "mm-hello"], directory: state + "/out")
            #expect(download.status == 0, "\(download.output)")
            #expect(FileManager.default.fileExists(atPath: state + "/out/mm-hello_1.0_all.deb"))
        }
    }

    @Test("the per-address limit refuses the excess connection with 503")
    func perAddressLimit() async throws {
        try await withServer({ $0.maxConnectionsPerAddress = 2; $0.keepAliveTimeout = .seconds(10) }) { server in
            // Two idle connections hold the address's slots.
            let holders = try (0..<2).map { _ in try HeldConnection(port: server.port) }
            try await Task.sleep(for: .milliseconds(200))
            let refused = try rawExchange(port: server.port, Array("GET / HTTP/1.1\r\nHost: x\r\n\r\n".utf8))
            #expect(refused.hasPrefix("HTTP/1.1 503"), "\(refused)")
            #expect(refused.contains("too many connections from 127.0.0.1"))
            holders.forEach { $0.close() }
            try await Task.sleep(for: .milliseconds(300))
            let admitted = try rawExchange(port: server.port, Array("GET /ubuntu/dists/noble/InRelease HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".utf8))
            #expect(admitted.hasPrefix("HTTP/1.1 200"), "\(admitted)")
        }
    }

    @Test("a slowloris client does not stop others being served, and is cut off")
    func slowloris() async throws {
        try await withServer({ $0.requestHeadTimeout = .seconds(2) }) { server in
            let slow = try HeldConnection(port: server.port)
            try slow.send("GET / HTTP/1.1\r\nHost: x\r\n")
            for _ in 0..<3 {
                let other = try await curl([server.base + "/ubuntu/dists/noble/InRelease"])
                #expect(other == "Origin: Ubuntu\n")
                try slow.send("X-Slow: a\r\n")
                try await Task.sleep(for: .milliseconds(500))
            }
            #expect(slow.isClosedByPeer(within: 30), "the slow client should have been disconnected")
        }
    }

    @Test("keep-alive: two requests on one connection; an idle connection is closed after the timeout")
    func keepAlive() async throws {
        try await withServer({ $0.keepAliveTimeout = .milliseconds(500) }) { server in
            let both = try await curl(["-v", server.base + "/ubuntu/dists/noble/InRelease", server.base + "/fedora/repodata/repomd.xml"])
            #expect(both.contains("Re-using existing connection") || both.contains("Reusing existing connection"), "\(both)")
            // The deadline itself is checked on loop time in MirrorHTTPHandlerTests; here: it closes.
            let idle = try HeldConnection(port: server.port)
            #expect(idle.isClosedByPeer(within: 30))
        }
    }

    @Test("pipelined requests are answered in order")
    func pipelining() async throws {
        try await withServer { server in
            let request = "GET /ubuntu/dists/noble/InRelease HTTP/1.1\r\nHost: x\r\n\r\nGET /fedora/repodata/repomd.xml HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            let answer = try rawExchange(port: server.port, Array(request.utf8))
            let first = try #require(answer.range(of: "Origin: Ubuntu"))
            let second = try #require(answer.range(of: "<repomd/>"))
            #expect(first.lowerBound < second.lowerBound)
        }
    }

    @Test("a GET that carries a body: the body is skipped and the next request answered")
    func getWithBody() async throws {
        try await withServer { server in
            let request = "GET /ubuntu/dists/noble/InRelease HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
                + "GET /fedora/repodata/repomd.xml HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            let answer = try rawExchange(port: server.port, Array(request.utf8))
            #expect(answer.components(separatedBy: "HTTP/1.1 200 OK").count == 3, "\(answer)")
            #expect(answer.contains("<repomd/>"))
            let chunked = try rawExchange(
                port: server.port, Array("GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n".utf8)
            )
            #expect(chunked.hasPrefix("HTTP/1.1 400") && chunked.contains("Connection: close"), "\(chunked)")
        }
    }

    @Test("a client that pipelines hundreds of requests without reading is paused, then answered in full and in order")
    func pipelinedBackpressure() async throws {
        try await withServer { server in
            let medium = [UInt8](repeating: 0x6d, count: 60_000)
            try Data(medium).write(to: URL(fileURLWithPath: server.root + "/ubuntu/medium.bin"))
            // 400 in-memory answers of 60 kB (24 MB, far beyond the socket buffers) with a sendfile
            // answer (3 MB) in the middle, the last closing the connection.
            var requests = ""
            for index in 0..<400 {
                let path = index == 200 ? "/ubuntu/pool/main/big.iso" : "/ubuntu/medium.bin"
                requests += "GET \(path) HTTP/1.1\r\nHost: x\r\n\(index == 399 ? "Connection: close\r\n" : "")\r\n"
            }
            let answer = try rawExchange(port: server.port, Array(requests.utf8), timeout: 10, readAfter: .seconds(1), limit: 64 << 20)
            #expect(answer.components(separatedBy: "HTTP/1.1 200 OK").count == 401)
            #expect(answer.utf8.count > 399 * 60_000 + ServeTests.payload.count)
            // In order: the sendfile answer is the 201st.
            let big = try #require(answer.range(of: "Content-Length: \(ServeTests.payload.count)\r\n"))
            #expect(answer[..<big.lowerBound].components(separatedBy: "HTTP/1.1 200 OK").count == 202)
            func served(_ log: String) -> Int { log.components(separatedBy: "\n").filter { $0.contains("\"GET /ubuntu/medium.bin HTTP/1.1\" 200 60000") }.count }
            #expect(served(try await server.accessLogText { served($0) >= 399 }) == 399)
        }
    }

    @Test("small files come from memory, yet a replaced, edited or swapped-out file is never served stale")
    func smallFileCache() async throws {
        let outside = NSTemporaryDirectory() + "mm-cache-outside-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: outside + "/noble", withIntermediateDirectories: true)
        try "OUTSIDE\n".write(toFile: outside + "/noble/Release", atomically: false, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: outside) }
        try await withServer { server in
            let url = server.base + "/ubuntu/dists/noble/Release"
            let file = server.root + "/ubuntu/dists/noble/Release"
            try "version 1\n".write(toFile: file, atomically: false, encoding: .utf8)
            // One connection, so one event loop and its cache: a miss, then two hits.
            await #expect(try curl([url, url, url]) == String(repeating: "version 1\n", count: 3))
            let metrics = try await curl([server.base + "/metrics"])
            #expect(metrics.contains("micromirror_http_cache_hits_total 2"), "\(metrics)")

            // From the encoded response and around it: GET twice, HEAD, a range, a conditional GET.
            let name = "/ubuntu/dists/noble/Release"
            let mixed = try rawExchange(
                port: server.port,
                Array(
                    ("GET \(name) HTTP/1.1\r\nHost: x\r\n\r\nGET \(name) HTTP/1.1\r\nHost: x\r\n\r\nHEAD \(name) HTTP/1.1\r\nHost: x\r\n\r\n"
                        + "GET \(name) HTTP/1.1\r\nHost: x\r\nRange: bytes=0-6\r\n\r\n"
                        + "GET \(name) HTTP/1.1\r\nHost: x\r\nIf-None-Match: *\r\nConnection: close\r\n\r\n").utf8
                )
            )
            let parts = mixed.components(separatedBy: "HTTP/1.1 ").dropFirst().map { String($0) }
            #expect(parts.count == 5, "\(mixed)")
            if parts.count == 5 {
                #expect(parts[0].hasPrefix("200 OK") && parts[0].hasSuffix("\r\n\r\nversion 1\n"))
                #expect(parts[1].hasPrefix("200 OK") && parts[1].hasSuffix("\r\n\r\nversion 1\n"))
                #expect(parts[2].hasPrefix("200 OK") && parts[2].contains("Content-Length: 10\r\n") && parts[2].hasSuffix("\r\n\r\n"))
                #expect(parts[3].hasPrefix("206 Partial Content") && parts[3].hasSuffix("\r\n\r\nversion"))
                #expect(parts[4].hasPrefix("304 Not Modified") && parts[4].contains("Connection: close\r\n"))
            }

            // A sync replaces the file: same size, new inode.
            try "version 2\n".write(toFile: file + ".new", atomically: false, encoding: .utf8)
            #expect(rename(file + ".new", file) == 0)
            await #expect(try curl([url]) == "version 2\n")

            // Edited in place, same size, mtime put back: ctime still tells.
            let before = try FileManager.default.attributesOfItem(atPath: file)[.modificationDate] as! Date
            let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: file))
            try handle.write(contentsOf: Data("version 3\n".utf8))
            try handle.close()
            try FileManager.default.setAttributes([.modificationDate: before], ofItemAtPath: file)
            await #expect(try curl([url]) == "version 3\n")

            // The directory swapped for a symlink out of the root: not found, nothing from outside.
            await #expect(try curl([url]) == "version 3\n")
            try FileManager.default.removeItem(atPath: server.root + "/ubuntu/dists/noble")
            try FileManager.default.createSymbolicLink(atPath: server.root + "/ubuntu/dists/noble", withDestinationPath: outside + "/noble")
            let swapped = try await curl(["-w", "%{http_code}", url])
            #expect(!swapped.contains("OUTSIDE") && swapped.hasSuffix("404"), "\(swapped)")
        }
    }

    @Test("access log lines gather per event loop, reach the file within seconds, and all are written at shutdown")
    func accessLogBatching() async throws {
        let server = try await LiveServer.start(populate: Self.populate)
        let url = server.base + "/ubuntu/dists/noble/InRelease"
        func lines(_ log: String) -> Int { log.split(separator: "\n").filter { $0.contains("\"GET /ubuntu/dists/noble/InRelease HTTP/1.1\" 200 15 ") }.count }
        _ = try await curl(Array(repeating: url, count: 20))
        #expect(lines(try await server.accessLogText { lines($0) >= 20 }) == 20)
        _ = try await curl(Array(repeating: url, count: 5))
        #expect(lines(await server.stop()) == 25)
    }

    @Test("/metrics counts requests and bytes per project and status class")
    func metrics() async throws {
        try await withServer { server in
            _ = try await curl([server.base + "/ubuntu/dists/noble/InRelease"])
            _ = try await curl([server.base + "/ubuntu/nope"])
            let text = try await curl([server.base + "/metrics"])
            #expect(text.contains("micromirror_http_requests_total{project=\"ubuntu\",status=\"2xx\"} 1"), "\(text)")
            #expect(text.contains("micromirror_http_requests_total{project=\"ubuntu\",status=\"4xx\"} 1"))
            #expect(text.contains("micromirror_http_sent_bytes_total{project=\"ubuntu\",status=\"2xx\"} 15"))
        }
    }

    @Test("an aborted download logs what was handed over, not the whole file")
    func abortedDownload() async throws {
        try await withServer({ $0.chunkSize = 1 << 20 }) { server in
            let big = [UInt8](repeating: 0x61, count: 64 << 20)
            try Data(big).write(to: URL(fileURLWithPath: server.root + "/ubuntu/huge.iso"))
            // Read 1 MiB, then hang up.
            let client = try HeldConnection(port: server.port)
            try client.send("GET /ubuntu/huge.iso HTTP/1.1\r\nHost: x\r\n\r\n")
            var received = 0
            var buffer = [UInt8](repeating: 0, count: 65536)
            while received < 1 << 20 {
                let n = recv(client.fd, &buffer, buffer.count, 0)
                if n <= 0 { break }
                received += n
            }
            client.close()
            let log = try await server.accessLogText { $0.contains("/ubuntu/huge.iso") }
            let line = try #require(log.split(separator: "\n").first { $0.contains("/ubuntu/huge.iso") })
            let bytes = try #require(Int(line.split(separator: " ")[9]))
            #expect(bytes >= 1 << 20 && bytes < 64 << 20, "logged \(bytes) bytes for an aborted 64 MiB download: \(line)")
        }
    }

    @Test("graceful shutdown lets a running transfer finish")
    func gracefulShutdown() async throws {
        let server = try await LiveServer.start(configure: { $0.shutdownGrace = .seconds(20) }, populate: Self.populate)
        let dir = NSTemporaryDirectory() + "grace-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let download = Process()
        download.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        // 3 MB at 1 MB/s: still running when shutdown starts.
        download.arguments = ["curl", "-sS", "--limit-rate", "1M", "-o", dir + "/big.iso", server.base + "/ubuntu/pool/main/big.iso"]
        try download.run()
        try await Task.sleep(for: .milliseconds(700))
        await server.stop()
        download.waitUntilExit()
        #expect(download.terminationStatus == 0)
        #expect(try Data(contentsOf: URL(fileURLWithPath: dir + "/big.iso")) == Data(Self.payload))
        // And the listener is gone.
        await #expect(try run("curl", ["-sS", "--max-time", "3", server.base + "/"]).status != 0)
    }

    @Test("DSCP CS1 is set on accepted sockets when asked, IPv4 and IPv6")
    func dscp() async throws {
        try await withServer({ $0.tos = 0x20; $0.listen.append(("::1", 0)) }) { server in
            // Read the marking off the server's packets on loopback, port-filtered.
            let text = try await captureDSCP(port: server.port) {
                _ = try await curl([server.base + "/ubuntu/dists/noble/InRelease"])
            }
            #expect(text.contains("tos 0x20"), "\(text)")
            if let v6port = server.ports.dropFirst().first {
                let capture6 = try await captureDSCP(port: v6port) {
                    _ = try await curl(["-g", "http://[::1]:\(v6port)/ubuntu/dists/noble/InRelease"])
                }
                #expect(capture6.contains("class 0x20"), "\(capture6)")
            } else {
                Issue.record("the server did not listen on ::1")
            }
        }
    }
}

/// Runs `body` while tcpdump captures the server's packets from `port` on loopback; returns tcpdump -v output.
func captureDSCP(port: Int, _ body: () async throws -> Void) async throws -> String {
    try await ToolRun.capture(["timeout", "8", "tcpdump", "-n", "-v", "-l", "-c", "3", "-i", "lo", "tcp and src port \(port)"], during: body)
}

/// A TCP connection the test holds open (and can trickle bytes into).
final class HeldConnection {
    let fd: Int32

    /// `receiveBuffer`: SO_RCVBUF set before connecting (a small window for a client that stops reading).
    init(port: Int, receiveBuffer: Int32? = nil) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        if var size = receiveBuffer { setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size)) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        inet_pton(AF_INET, "127.0.0.1", &address.sin_addr)
        let ok = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard ok == 0 else { throw TestError("connect failed") }
    }

    func send(_ text: String) throws {
        let sent = text.withCString { Foundation.send(fd, $0, strlen($0), Int32(MSG_NOSIGNAL)) }
        guard sent >= 0 else { throw TestError("send failed") }
    }

    /// True when the server has closed its side (recv returns 0 or a reset) within `seconds`.
    func isClosedByPeer(within seconds: Int = 1) -> Bool {
        var tv = timeval(tv_sec: seconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = recv(fd, &buffer, buffer.count, 0)
            if n == 0 { return true }
            if n < 0 { return errno == ECONNRESET }
        }
    }

    private var open = true

    /// Closes once; a second close could hit a descriptor number another test has reused since.
    func close() {
        guard open else { return }
        open = false
        Foundation.close(fd)
    }

    deinit { close() }
}
