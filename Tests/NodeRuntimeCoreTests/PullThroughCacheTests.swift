import Foundation
import Glibc
import MicromirrorKit
import MicromirrorTestSupport
import NodeRuntimeCore
import SystemKit
import Testing

/// A project in cache mode, end to end: a real nginx as the origin (slowed, killed, hung, changed
/// under the cache), the real server in front of it, real clients (curl, apt-get).
@Suite("Pull-through cache")
struct PullThroughCacheTests {
    /// The server with one project `proj` in cache mode in front of `origin`.
    final class Rig: @unchecked Sendable {
        let origin: OriginServer
        let server: LiveServer
        let cacheRoot: String

        static func start(
            origin: OriginServer, policy: (inout CachePolicy) -> Void = { _ in }, configure: @escaping (inout ServeConfiguration) -> Void = { _ in }
        ) async throws -> Rig {
            let cacheRoot = try ToolRun.scratchDirectory("cache")
            var made = CachePolicy(origin: URL(string: origin.origin("proj"))!)
            made.originRetry = .seconds(1)
            policy(&made)
            let chosen = made
            let server = try await LiveServer.start(configure: { configuration in
                configuration.cacheProjects = ["proj": chosen]
                configuration.cacheRoot = cacheRoot
                configuration.maxConnectionsPerAddress = 512
                configuration.firstPrefetchAfter = .seconds(3600)
                configure(&configuration)
            }) { _ in }
            return Rig(origin: origin, server: server, cacheRoot: cacheRoot)
        }

        private init(origin: OriginServer, server: LiveServer, cacheRoot: String) {
            self.origin = origin
            self.server = server
            self.cacheRoot = cacheRoot
        }

        func url(_ path: String) -> String { server.base + "/proj/" + path }
        /// Where the cache keeps `path` once published.
        func cached(_ path: String) -> String { cacheRoot + "/proj/" + path }
        func isCached(_ path: String) -> Bool { FileManager.default.fileExists(atPath: cached(path)) }
        /// Transfers in flight (their partial files).
        var partials: [String] { (try? FileManager.default.contentsOfDirectory(atPath: cacheRoot + "/.partial/proj")) ?? [] }

        func status() async throws -> [String: Any] {
            let (_, text) = try await run("curl", ["-sS", "--max-time", "20", server.base + "/status.json"])
            let page = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any]
            let projects = page?["projects"] as? [[String: Any]] ?? []
            return projects.first { $0["name"] as? String == "proj" } ?? [:]
        }

        func stop() async {
            await server.stop()
            origin.stop()
            try? FileManager.default.removeItem(atPath: cacheRoot)
        }
    }

    /// One answer as curl saw it.
    struct Fetched {
        var status: Int
        /// `X-Cache` (HIT, MISS, REVALIDATED, STALE), empty when absent.
        var cache: String
        var body: [UInt8]
        /// curl's exit status (18: the body ended short).
        var exit: Int32
    }

    static func fetch(_ url: String, range: String? = nil, maxTime: Int = 60) async throws -> Fetched {
        let out = NSTemporaryDirectory() + "mm-fetch-\(UUID().uuidString)"
        defer { unlink(out) }
        var arguments = ["-s", "--max-time", "\(maxTime)", "-o", out, "-w", "%{http_code} %header{x-cache}"]
        if let range { arguments += ["-r", range] }
        let (exit, written) = try await run("curl", arguments + [url])
        let fields = written.split(separator: " ")
        let body = (try? Data(contentsOf: URL(fileURLWithPath: out))).map { [UInt8]($0) } ?? []
        return Fetched(status: fields.first.flatMap { Int($0) } ?? 0, cache: fields.count > 1 ? String(fields[1]) : "", body: body, exit: exit)
    }

    /// `count` clients at once (one curl, parallel transfers), each writing its own file; their
    /// status codes and bodies.
    static func fetchConcurrently(_ url: String, count: Int, range: String? = nil) async throws -> [(status: Int, body: [UInt8])] {
        let directory = try ToolRun.scratchDirectory("clients")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var arguments = ["-s", "--parallel", "--parallel-immediate", "--parallel-max", "\(count)", "--max-time", "60", "-w", "%{http_code}\\n"]
        if let range { arguments += ["-r", range] }
        for index in 0..<count { arguments += ["-o", "\(directory)/\(index)", url] }
        let (_, written) = try await run("curl", arguments)
        let statuses = written.split(separator: "\n").compactMap { Int($0) }
        return (0..<count).map { index in
            (index < statuses.count ? statuses[index] : 0, (try? Data(contentsOf: URL(fileURLWithPath: "\(directory)/\(index)"))).map { [UInt8]($0) } ?? [])
        }
    }

    // MARK: - One transfer for many

    @Test("a hundred clients asking for the same uncached file at once cause one origin request and all get the same bytes, ranges too")
    func hundredClientsOneTransfer() async throws {
        let origin = try OriginServer(slowRate: "1m")
        let file = patternBytes(3 << 20, seed: 1)
        try origin.put("proj/slow/big.iso", file)
        let rig = try await Rig.start(origin: origin)
        // 90 whole-file clients and 10 asking for a range near the end, all while the transfer (3 s
        // at the origin's 1 MiB/s) runs.
        async let whole = Self.fetchConcurrently(rig.url("slow/big.iso"), count: 90)
        async let ranged = Self.fetchConcurrently(rig.url("slow/big.iso"), count: 10, range: "3000000-3000999")
        let (wholes, ranges) = try await (whole, ranged)
        #expect(wholes.allSatisfy { $0.status == 200 && $0.body == file }, "every client gets the whole file")
        #expect(ranges.allSatisfy { $0.status == 206 && $0.body == Array(file[3_000_000...3_000_999]) }, "ranges into the file while it arrives")
        let asked = origin.requests("/proj/slow/big.iso")
        #expect(asked.count == 1, "one origin request, not \(asked.count)")
        #expect(asked.first?.bytes == file.count)
        // Published whole; the next request is a hit and does not reach the origin.
        let again = try await Self.fetch(rig.url("slow/big.iso"))
        #expect(again.status == 200 && again.cache == "HIT" && again.body == file)
        #expect(origin.requests("/proj/slow/big.iso").count == 1)
        #expect(try Data(contentsOf: URL(fileURLWithPath: rig.cached("slow/big.iso"))) == Data(file))
        // The root's listing shows the project; its own listing what is cached.
        let root = try await run("curl", ["-sS", rig.server.base + "/?format=json"]).output
        #expect(root.contains("\"name\":\"proj\""), "\(root)")
        let listing = try await run("curl", ["-sS", rig.url("slow/") + "?format=json"]).output
        #expect(listing.contains("\"name\":\"big.iso\"") && listing.contains("\"size\":\(file.count)"), "\(listing)")
        await rig.stop()
    }

    @Test("a client leaving mid-stream does not stop the transfer for the others or the cache")
    func clientLeavingMidStream() async throws {
        let origin = try OriginServer(slowRate: "1m")
        let file = patternBytes(3 << 20, seed: 2)
        try origin.put("proj/slow/leave.iso", file)
        let rig = try await Rig.start(origin: origin)
        // The first client gives up after a second (a third of the way); the second stays.
        async let quitter = Self.fetch(rig.url("slow/leave.iso"), maxTime: 1)
        try await Task.sleep(for: .milliseconds(300))
        async let stayer = Self.fetch(rig.url("slow/leave.iso"))
        let (left, stayed) = try await (quitter, stayer)
        #expect(left.exit == 28 && left.body.count < file.count, "the first client left early (curl exit \(left.exit), \(left.body.count) bytes)")
        #expect(stayed.status == 200 && stayed.body == file)
        #expect(origin.requests("/proj/slow/leave.iso").count == 1)
        #expect(try await eventually(seconds: 30) { rig.isCached("slow/leave.iso") })
        #expect(try Data(contentsOf: URL(fileURLWithPath: rig.cached("slow/leave.iso"))) == Data(file))
        // The access log has the whole transfer once, and the client that left (when it left after
        // its answer began; on a loaded machine it may leave before) with only the bytes it got.
        let log = try await rig.server.accessLogText { $0.components(separatedBy: "GET /proj/slow/leave.iso ").count >= 3 }
        let lines = log.split(separator: "\n").filter { $0.contains("GET /proj/slow/leave.iso ") }
        #expect(lines.filter { $0.contains("\" 200 \(file.count) ") }.count == 1, "\(lines)")
        #expect(lines.count <= 2, "\(lines)")
        await rig.stop()
    }

    @Test("an origin killed mid-transfer leaves no cache entry and no whole-looking body; the next request fetches again")
    func originKilledMidTransfer() async throws {
        let origin = try OriginServer(slowRate: "1m")
        let file = patternBytes(3 << 20, seed: 3)
        try origin.put("proj/slow/cut.iso", file)
        let rig = try await Rig.start(origin: origin)
        async let client = Self.fetch(rig.url("slow/cut.iso"))
        // Kill the origin once some of the file has gone through.
        #expect(try await eventually(seconds: 30) { rig.partials.count == 1 })
        try await Task.sleep(for: .seconds(1))
        origin.kill()
        let cut = try await client
        #expect(cut.status == 200 && cut.body.count < file.count && cut.exit == 18, "the client sees a cut transfer (curl exit \(cut.exit), \(cut.body.count) bytes)")
        #expect(Array(cut.body) == Array(file.prefix(cut.body.count)), "what it got is the file's start")
        #expect(!rig.isCached("slow/cut.iso"), "a cut transfer is never published")
        #expect(try await eventually(seconds: 10) { rig.partials.isEmpty }, "its partial file is removed")
        // While the origin is down (within origin-retry) a request is refused at once, not hung.
        let refused = try await Self.fetch(rig.url("slow/cut.iso"), maxTime: 20)
        #expect(refused.status == 502, "502 while the origin is down, got \(refused.status)")
        try origin.start()
        try await Task.sleep(for: .milliseconds(1200))  // origin-retry (1 s in this rig)
        let again = try await Self.fetch(rig.url("slow/cut.iso"))
        #expect(again.status == 200 && again.cache == "MISS" && again.body == file)
        #expect(try Data(contentsOf: URL(fileURLWithPath: rig.cached("slow/cut.iso"))) == Data(file))
        await rig.stop()
    }

    // MARK: - Revalidation, 404, the origin down or hung

    @Test("metadata is revalidated: 304 keeps the copy, a change upstream replaces it, a 404 drops it")
    func metadataRevalidation() async throws {
        let origin = try OriginServer()
        let path = "dists/stable/InRelease"
        try origin.put("proj/" + path, Array("Suite: stable\nVersion: 1\n".utf8), modified: Date(timeIntervalSince1970: 1_700_000_000))
        let rig = try await Rig.start(origin: origin) { $0.metadataTTL = .zero }
        let first = try await Self.fetch(rig.url(path))
        #expect(first.status == 200 && first.cache == "MISS" && String(decoding: first.body, as: UTF8.self).contains("Version: 1"))
        let second = try await Self.fetch(rig.url(path))
        #expect(second.status == 200 && second.cache == "REVALIDATED" && second.body == first.body)
        #expect(origin.requests("/proj/" + path).map(\.status) == [200, 304], "a conditional request, answered 304")
        // The origin publishes a new index: the very next request has it, and so does the cache.
        let newer = Array("Suite: stable\nVersion: 2 (a longer file)\n".utf8)
        try origin.put("proj/" + path, newer, modified: Date(timeIntervalSince1970: 1_700_100_000))
        let third = try await Self.fetch(rig.url(path))
        #expect(third.status == 200 && third.cache == "MISS" && third.body == newer)
        #expect(try await eventually(seconds: 10) { (try? Data(contentsOf: URL(fileURLWithPath: rig.cached(path)))) == Data(newer) })
        // Gone upstream: gone here.
        try FileManager.default.removeItem(atPath: origin.www + "/proj/" + path)
        let fourth = try await Self.fetch(rig.url(path))
        #expect(fourth.status == 404)
        #expect(!rig.isCached(path), "dropped from the cache")
        // A directory asked for without its slash: the origin's redirect is passed on as the same
        // path here, and says nothing against the origin (the next miss is fetched, not refused).
        let directory = try await run("curl", ["-sS", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}", rig.url("dists")]).output
        #expect(directory == "301 \(rig.server.base)/proj/dists/", "\(directory)")
        // Refused by the origin (403): a 502 naming it, and the origin is not taken for down.
        try origin.put("proj/private/secret.deb", [1, 2, 3])
        let refused = try await Self.fetch(rig.url("private/secret.deb"))
        #expect(refused.status == 502 && String(decoding: refused.body, as: UTF8.self).contains("403"), "\(refused.status)")
        try origin.put("proj/pool/after-403.deb", [4, 5, 6])
        #expect(try await Self.fetch(rig.url("pool/after-403.deb")).status == 200, "the origin is still asked")
        // An immutable package is never asked about again.
        try origin.put("proj/pool/p_1.0_all.deb", patternBytes(5000, seed: 4))
        _ = try await Self.fetch(rig.url("pool/p_1.0_all.deb"))
        let hit = try await Self.fetch(rig.url("pool/p_1.0_all.deb"))
        #expect(hit.cache == "HIT" && origin.requests("/proj/pool/p_1.0_all.deb").count == 1)
        await rig.stop()
    }

    @Test("a file whose SHA-256 its by-hash name gives does not match is never published nor delivered whole")
    func byHashChecked() async throws {
        let origin = try OriginServer()
        let good = Array("Package: a\n".utf8)
        let name = SHA256Hasher.hex(of: good)
        try origin.put("proj/dists/stable/main/binary-all/by-hash/SHA256/" + name, good)
        // Served under the name of other content (a corrupt or tampered origin).
        let wrong = SHA256Hasher.hex(of: Array("something else".utf8))
        try origin.put("proj/dists/stable/main/binary-all/by-hash/SHA256/" + wrong, Array("Package: b, not what the name says\n".utf8))
        let rig = try await Rig.start(origin: origin)
        let ok = try await Self.fetch(rig.url("dists/stable/main/binary-all/by-hash/SHA256/" + name))
        #expect(ok.status == 200 && ok.body == good && rig.isCached("dists/stable/main/binary-all/by-hash/SHA256/" + name))
        let bad = try await Self.fetch(rig.url("dists/stable/main/binary-all/by-hash/SHA256/" + wrong))
        // Either the check failed before the answer began (502) or the body is cut before its last byte.
        #expect(bad.status == 502 || (bad.status == 200 && bad.exit == 18), "status \(bad.status), curl exit \(bad.exit), \(bad.body.count) bytes")
        #expect(bad.body != Array("Package: b, not what the name says\n".utf8), "never the whole wrong file")
        #expect(!rig.isCached("dists/stable/main/binary-all/by-hash/SHA256/" + wrong))
        await rig.stop()
    }

    @Test("origin down: cached files are served (metadata marked stale), uncached ones get 502 at once, /status says so")
    func originDown() async throws {
        let origin = try OriginServer()
        try origin.put("proj/pool/a.deb", patternBytes(200_000, seed: 5))
        try origin.put("proj/repodata/repomd.xml", Array("<repomd/>\n".utf8))
        let rig = try await Rig.start(origin: origin) { $0.metadataTTL = .zero }
        _ = try await Self.fetch(rig.url("pool/a.deb"))
        _ = try await Self.fetch(rig.url("repodata/repomd.xml"))
        origin.kill()
        let package = try await Self.fetch(rig.url("pool/a.deb"))
        #expect(package.status == 200 && package.cache == "HIT" && package.body == patternBytes(200_000, seed: 5))
        let metadata = try await Self.fetch(rig.url("repodata/repomd.xml"))
        #expect(metadata.status == 200 && metadata.cache == "STALE" && metadata.body == Array("<repomd/>\n".utf8))
        let missing = try await Self.fetch(rig.url("pool/never-cached.deb"), maxTime: 20)
        #expect(missing.status == 502, "uncached while the origin is down: 502, got \(missing.status)")
        #expect(String(decoding: missing.body, as: UTF8.self).contains("127.0.0.1:\(origin.port)"), "the answer names the origin")
        let status = try await rig.status()
        #expect(status["state"] as? String == "cache-stale")
        let cache = status["cache"] as? [String: Any]
        #expect((cache?["originError"] as? String)?.isEmpty == false)
        #expect((cache?["files"] as? Int) == 2)
        let metrics = try await run("curl", ["-sS", rig.server.base + "/metrics"]).output
        #expect(metrics.contains("micromirror_cache_origin_up{project=\"proj\"} 0"))
        #expect(metrics.contains("micromirror_cache_answers{project=\"proj\",result=\"stale\"} 1"))
        await rig.stop()
    }

    @Test("an origin that accepts and never answers gets 504 after origin-timeout, and the client is not left hanging")
    func hungOrigin() async throws {
        // A socket that listens and never accepts: the kernel completes the handshake, nobody answers.
        let (fd, port) = try RsyncDaemon.boundSocket(listening: true)
        defer { close(fd) }
        let origin = try OriginServer()
        let rig = try await Rig.start(origin: origin) { policy in
            policy.origin = URL(string: "http://127.0.0.1:\(port)/proj/")!
            policy.originTimeout = .seconds(2)
        }
        let answer = try await Self.fetch(rig.url("pool/x.deb"), maxTime: 30)
        #expect(answer.status == 504, "504, got \(answer.status): \(String(decoding: answer.body, as: UTF8.self))")
        await rig.stop()
    }

    // MARK: - The budget

    @Test("the budget holds under a stream of distinct files, least recently used first, never a file being sent")
    func budgetHolds() async throws {
        let origin = try OriginServer()
        let piece = 512 << 10
        for index in 0..<24 { try origin.put("proj/pool/f\(index).deb", patternBytes(piece, seed: UInt8(index))) }
        let pinnedBytes = patternBytes(16 << 20, seed: 99)
        try origin.put("proj/pool/pinned.iso", pinnedBytes)
        let budget: Int64 = 20 << 20
        let rig = try await Rig.start(origin: origin) { $0.budget = budget }
        func cachedBytes() -> Int64 {
            let walker = FileManager.default.enumerator(atPath: rig.cacheRoot + "/proj")
            var total: Int64 = 0
            while let name = walker?.nextObject() as? String {
                var info = stat()
                if stat(rig.cacheRoot + "/proj/" + name, &info) == 0, info.st_mode & S_IFMT == S_IFREG { total += Int64(info.st_size) }
            }
            return total
        }
        #expect(try await Self.fetch(rig.url("pool/pinned.iso")).body == pinnedBytes)
        // A client that asks for the big file and does not read: its response cannot finish, so the
        // file is being sent for as long as the connection stays open.
        let client = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var small: Int32 = 4096
        setsockopt(client, SOL_SOCKET, SO_RCVBUF, &small, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(rig.server.port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(client, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        try #require(connected == 0)
        let request = Array("GET /proj/pool/pinned.iso HTTP/1.1\r\nHost: x\r\n\r\n".utf8)
        _ = request.withUnsafeBytes { send(client, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        try await Task.sleep(for: .milliseconds(500))
        for index in 0..<16 {
            let got = try await Self.fetch(rig.url("pool/f\(index).deb"))
            #expect(got.status == 200 && got.body == patternBytes(piece, seed: UInt8(index)))
            #expect(cachedBytes() <= budget, "within the budget after f\(index): \(cachedBytes()) bytes")
        }
        #expect(rig.isCached("pool/pinned.iso"), "the file being sent stays, though least recently used")
        close(client)
        // Once nobody sends it, it is the least recently used and goes first; f1 is kept recent.
        _ = try await Self.fetch(rig.url("pool/f15.deb"))
        for index in 16..<24 {
            _ = try await Self.fetch(rig.url("pool/f\(index).deb"))
            #expect(cachedBytes() <= budget, "within the budget after f\(index): \(cachedBytes()) bytes")
        }
        #expect(!rig.isCached("pool/pinned.iso"), "evicted once no longer sent")
        #expect(rig.isCached("pool/f23.deb") && rig.isCached("pool/f15.deb"), "the most recent files stay")
        let cache = try await rig.status()["cache"] as? [String: Any]
        #expect((cache?["counts"] as? [String: Any])?["evicted"] as? Int ?? 0 > 0)
        #expect((cache?["bytes"] as? Int).map { Int64($0) <= budget } == true)
        await rig.stop()
    }

    // MARK: - Prefetching

    @Test("prefetch: the prepopulate list is fetched before anyone asks, popular metadata is kept fresh, within the bandwidth limit")
    func prefetch() async throws {
        let origin = try OriginServer()
        try origin.put("proj/pool/pre.deb", patternBytes(300_000, seed: 7))
        try origin.put("proj/dists/stable/Release", Array("Version: 1\n".utf8), modified: Date(timeIntervalSince1970: 1_700_000_000))
        let rig = try await Rig.start(
            origin: origin,
            policy: { policy in
                policy.prepopulate = ["pool/pre.deb"]
                policy.prefetchTop = 5
                policy.prefetchRate = 10 << 20
                policy.metadataTTL = .seconds(1)
            },
            configure: { configuration in
                configuration.firstPrefetchAfter = .seconds(1)
                configuration.prefetchEvery = .seconds(2)
            }
        )
        // Nobody asked for it: it arrives anyway, fetched by the prefetcher.
        #expect(try await eventually(seconds: 30) { rig.isCached("pool/pre.deb") })
        #expect(origin.requests("/proj/pool/pre.deb").allSatisfy { $0.agent.hasPrefix("micromirror-cache") })
        let hit = try await Self.fetch(rig.url("pool/pre.deb"))
        #expect(hit.cache == "HIT" && hit.body == patternBytes(300_000, seed: 7))
        // A popular index changes upstream: the cache has the new one before the next request.
        for _ in 0..<3 { _ = try await Self.fetch(rig.url("dists/stable/Release")) }
        try origin.put("proj/dists/stable/Release", Array("Version: 2\n".utf8), modified: Date(timeIntervalSince1970: 1_700_100_000))
        #expect(
            try await eventually(seconds: 30) {
                (try? String(contentsOfFile: rig.cached("dists/stable/Release"), encoding: .utf8)) == "Version: 2\n"
            }, "prefetching picked up the new index"
        )
        // Counted once the transfer is recorded, a moment after the file is renamed into place.
        #expect(
            try await eventually(seconds: 30) {
                let cache = try? await rig.status()["cache"] as? [String: Any]
                return (cache?["counts"] as? [String: Any])?["prefetched"] as? Int ?? 0 >= 2
            }, "both prefetches counted"
        )
        await rig.stop()
    }

    // MARK: - Real package managers

    @Test("apt-get updates and installs a package through the cache from a generated repository")
    func aptThroughTheCache() async throws {
        let origin = try OriginServer()
        let work = try ToolRun.scratchDirectory("apt")
        defer { try? FileManager.default.removeItem(atPath: work) }
        // A one-package repository, as apt-ftparchive makes it.
        let fm = FileManager.default
        let package = work + "/pkg"
        try fm.createDirectory(atPath: package + "/DEBIAN", withIntermediateDirectories: true)
        try fm.createDirectory(atPath: package + "/usr/share/mm-cache-probe", withIntermediateDirectories: true)
        try "Package: mm-cache-probe\nVersion: 1.0\nArchitecture: all\nMaintainer: micromirror <noc@example.org>\nDescription: installed through the cache\n"
            .write(toFile: package + "/DEBIAN/control", atomically: true, encoding: .utf8)
        try "through the cache\n".write(toFile: package + "/usr/share/mm-cache-probe/hello", atomically: true, encoding: .utf8)
        let repo = origin.www + "/proj"
        try fm.createDirectory(atPath: repo + "/pool/main", withIntermediateDirectories: true)
        try fm.createDirectory(atPath: repo + "/dists/stable/main/binary-all", withIntermediateDirectories: true)
        let deb = repo + "/pool/main/mm-cache-probe_1.0_all.deb"
        #expect(try await run("dpkg-deb", ["--root-owner-group", "-Zgzip", "--build", package, deb]).status == 0)
        let packages = try await run("apt-ftparchive", ["packages", "pool"], directory: repo)
        try packages.output.write(toFile: repo + "/dists/stable/main/binary-all/Packages", atomically: true, encoding: .utf8)
        #expect(try await run("gzip", ["-k", repo + "/dists/stable/main/binary-all/Packages"]).status == 0)
        let release = try await run(
            "apt-ftparchive",
            [
                "-o", "APT::FTPArchive::Release::Suite=stable", "-o", "APT::FTPArchive::Release::Codename=stable", "-o", "APT::FTPArchive::Release::Components=main",
                "-o", "APT::FTPArchive::Release::Architectures=all amd64", "release", ".",
            ], directory: repo + "/dists/stable"
        )
        try release.output.write(toFile: repo + "/dists/stable/Release", atomically: true, encoding: .utf8)
        let rig = try await Rig.start(origin: origin)
        // apt with its own lists, archives and dpkg database, installing into a directory.
        let root = work + "/root"
        for sub in ["/lists/partial", "/archives/partial", "/root/var/lib/dpkg/info", "/root/var/lib/dpkg/updates"] {
            try fm.createDirectory(atPath: work + sub, withIntermediateDirectories: true)
        }
        fm.createFile(atPath: root + "/var/lib/dpkg/status", contents: Data())
        try "deb [trusted=yes] \(rig.server.base)/proj stable main\n".write(toFile: work + "/sources.list", atomically: true, encoding: .utf8)
        let options = [
            "-o", "Dir::Etc::SourceList=\(work)/sources.list", "-o", "Dir::Etc::SourceParts=/nonexistent", "-o", "Dir::State::Lists=\(work)/lists",
            "-o", "Dir::Cache::archives=\(work)/archives", "-o", "Dir::Cache::pkgcache=", "-o", "Dir::Cache::srcpkgcache=",
            "-o", "Dir::State::status=\(root)/var/lib/dpkg/status", "-o", "DPkg::Options::=--root=\(root)", "-o", "DPkg::Options::=--force-not-root",
            "-o", "Debug::NoLocking=1", "-o", "APT::Sandbox::User=root",
        ]
        let update = try await run("apt-get", options + ["update"])
        #expect(update.status == 0, "apt-get update: \(update.output)")
        let install = try await run("apt-get", options + ["install", "-y", "mm-cache-probe"])
        #expect(install.status == 0, "apt-get install: \(install.output)")
        #expect((try? String(contentsOfFile: root + "/usr/share/mm-cache-probe/hello", encoding: .utf8)) == "through the cache\n")
        // What apt fetched came through the cache and stays there.
        #expect(rig.isCached("pool/main/mm-cache-probe_1.0_all.deb") && rig.isCached("dists/stable/Release"))
        #expect(origin.requests("/proj/pool/main/mm-cache-probe_1.0_all.deb").count == 1)
        // A second machine's update is answered from the cache (indexes revalidated, not refetched).
        try fm.removeItem(atPath: work + "/lists")
        try fm.createDirectory(atPath: work + "/lists/partial", withIntermediateDirectories: true)
        #expect(try await run("apt-get", options + ["update"]).status == 0)
        #expect(origin.requests("/proj/dists/stable/Release").filter { $0.status == 200 }.count == 1)
        await rig.stop()
    }

    // MARK: - Recipes

    @Test("recipes in cache mode: what is read, and every mistake named with its line")
    func recipes() throws {
        let recipe = try SyncRecipe.parse(
            """
            project: fedora
            mode: cache
            origin: https://dl.fedoraproject.org/pub/fedora
            cache:
              budget: 200G
              metadata-ttl: 0
              origin-timeout: 5s
              prefetch:
                top: 50
                bwlimit: 2M
              prepopulate: [releases/41/Everything/x86_64/os/repodata/repomd.xml]
            """, file: "fedora.yaml"
        )
        let policy = try #require(recipe.cache)
        #expect(policy.origin.absoluteString == "https://dl.fedoraproject.org/pub/fedora/")
        #expect(policy.budget == 200 << 30 && policy.metadataTTL == .zero && policy.originTimeout == .seconds(5))
        #expect(policy.prefetchTop == 50 && policy.prefetchRate == 2 << 20 && policy.prepopulate.count == 1)
        #expect(policy.freshness(of: "releases/41/Everything/x86_64/os/Packages/v/vlc-3.0.rpm") == .immutable)
        #expect(policy.freshness(of: "releases/41/Everything/x86_64/os/repodata/repomd.xml") == .revalidate(after: .zero))
        #expect(policy.freshness(of: "dists/stable/main/binary-amd64/by-hash/SHA256/" + String(repeating: "a", count: 64)) == .immutable)
        #expect(policy.freshness(of: "README") == .revalidate(after: .seconds(3600)))
        #expect(try SyncRecipe.parse("project: ubuntu\n", file: "ubuntu.yaml").cache == nil)
        // Without origin: the node's upstream host over HTTP, at the module's path.
        let shipped = try SyncRecipe.load(path: SyncTests.recipes + "/debian-cd.yaml")
        #expect(shipped.cachePolicy(upstream: "rsync://mirror.fcix.net/")?.origin.absoluteString == "http://mirror.fcix.net/debian-cd/")
        #expect(shipped.cachePolicy(upstream: "rsync://[2001:db8::1]:8873/")?.origin.absoluteString == "http://[2001:db8::1]/debian-cd/")
        let moved = try SyncRecipe.parse("project: isos\nmode: cache\nmodule: debian-images\n", file: "isos.yaml")
        #expect(moved.cachePolicy(upstream: "rsync://192.0.2.1/")?.origin.absoluteString == "http://192.0.2.1/debian-images/")
        do {
            _ = try SyncRecipe.parse(
                "project: p\nmode: cache\norigin: ftp://example.org/p/\nstages: [{name: all}]\ncache:\n  budget: 10\n  prefetch:\n    every: 5s\n  color: blue\n",
                file: "p.yaml"
            )
            Issue.record("a bad recipe was accepted")
        } catch {
            let text = "\(error)"
            for expected in ["origin", "stages", "budget", "every", "color", "p.yaml"] {
                #expect(text.contains(expected), "the error names \(expected): \(text)")
            }
        }
    }
}
