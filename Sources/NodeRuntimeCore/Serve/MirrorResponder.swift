import Foundation
import NIOCore
import NIOPosix

/// Decides the answer to a parsed request: routing, files, ranges, conditionals, listings, errors.
/// One per connection (it keeps a small cache); runs on the connection's event loop.
struct MirrorResponder {
    let shared: ServeContext
    /// The event loop's clock, for the `Date` header (the handler keeps it current).
    let clock: LoopClock
    /// The event loop's small-file cache.
    let cache: SmallFileCache
    /// Files up to this size are read into the response buffer rather than sent with sendfile.
    static let smallFileLimit: Int64 = 64 << 10
    /// Bodies up to this size are copied behind the head (one buffer); larger ones are a second buffer.
    static let copyLimit = 16 << 10
    /// The last `Last-Modified` text made, by mtime: mirrors serve the same files over and over.
    private var lastModifiedCache: (mtime: Int, text: String) = (-1, "")

    /// Made on the connection's event loop (the clock and cache are that loop's).
    init(shared: ServeContext, clock: LoopClock, tally: ServeMetrics.Tally) {
        self.shared = shared
        self.clock = clock
        self.cache = shared.smallFileCache(tally: tally)
    }

    mutating func respond(to request: HTTPRequest, allocator: ByteBufferAllocator) -> MirrorResponse {
        let isHead = request.method == .head
        guard request.method == .get || isHead else {
            return simple(.methodNotAllowed, "only GET and HEAD are served here\n", request: request, allocator: allocator, extra: .allow)
        }
        if request.body == .chunked {
            return simple(.badRequest, "request bodies are not accepted\n", request: request, allocator: allocator, malformed: true)
        }
        let path: RequestPath
        switch RequestPath.parse(request.target, maxLength: shared.configuration.maxURILength) {
        case .success(let parsed): path = parsed
        case .failure(.tooLong): return simple(.uriTooLong, "request target too long\n", request: request, allocator: allocator, malformed: true)
        case .failure(.badRequest(let why)):
            return simple(.badRequest, "bad request: \(why)\n", request: request, allocator: allocator, malformed: true)
        }
        let project = shared.projectLabel(path.components.first)
        if path.components == ["status"], !path.trailingSlash {
            return Self.deferred(.status(json: Self.wantsJSON(request, path)), request: request, allocator: allocator)
        }
        if path.components == ["status.json"] {
            return Self.deferred(.status(json: true), request: request, allocator: allocator)
        }
        if path.components.count == 4, path.components[0] == "status", path.components[1] == "logs", !path.trailingSlash {
            // A run's log: only a project of this node and a name the sync writes, so nothing
            // else under the state directory is ever reachable.
            let (name, log) = (path.components[2], path.components[3])
            guard shared.configuration.projects.contains(name), SyncRunLog.isLogName(log), let state = shared.configuration.syncStateDirectory,
                FileManager.default.fileExists(atPath: SyncRunLog.directory(project: name, stateDirectory: state) + "/" + log)
            else { return simple(.notFound, "no such sync log\n", request: request, allocator: allocator) }
            return Self.deferred(.syncLog(path: SyncRunLog.directory(project: name, stateDirectory: state) + "/" + log), request: request, allocator: allocator)
        }
        if path.components == ["jobs"], !path.trailingSlash {
            return Self.deferred(.jobs, request: request, allocator: allocator)
        }
        if path.components == ["mirrorz.json"] {
            // The site's address as the client reached it (MirrorZ joins it with each project's path).
            // (A name or an address, nothing else: the header is the client's.)
            let host = request.host.flatMap { !$0.isEmpty && $0.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || ".:-[]".contains($0)) } ? $0 : nil } ?? "localhost"
            return Self.deferred(.mirrorz(siteURL: "http://" + host), request: request, allocator: allocator)
        }
        if path.components == ["metrics"] {
            return Self.deferred(.metrics, request: request, allocator: allocator)
        }
        var response: MirrorResponse
        if let name = path.components.first, let pullThrough = shared.caches[name] {
            response = cached(request, path, pullThrough, allocator: allocator)
            response.project = project
            return response
        }
        let resolver = shared.resolver
        let relative = resolver.relativePath(path)
        if resolver.isHidden(path) {
            response = simple(.notFound, "not found\n", request: request, allocator: allocator)
        } else if let entry = cache.entry(for: relative, resolver: resolver, second: clock.second) {
            // The plain GET of a hot small file: the whole response as encoded earlier this second.
            let plain = request.method == .get && request.range == nil && request.ifNoneMatch == nil && request.ifModifiedSince == nil
            if plain, let bytes = entry.encodedResponse(second: clock.second, keepAlive: request.keepAlive) {
                response = MirrorResponse(status: .ok, bytes: bytes, bodyInBytes: entry.facts.info.size, file: nil, keepAlive: request.keepAlive, project: project)
            } else {
                response = file(request, entry.facts, body: .memory(entry.body), allocator: allocator)
                if plain, response.status == .ok, response.tail == nil {
                    entry.remember(response.bytes, second: clock.second, keepAlive: request.keepAlive)
                }
            }
        } else {
            switch resolver.resolve(relative: relative) {
            case .notFound:
                response = simple(.notFound, "not found\n", request: request, allocator: allocator)
            case .directory(let directory):
                if path.trailingSlash || path.components.isEmpty {
                    let shown = "/" + path.components.joined(separator: "/") + (path.components.isEmpty ? "" : "/")
                    response = Self.deferred(
                        .listing(relative: directory, shown: shown, json: Self.wantsJSON(request, path), cacheProject: nil), request: request, allocator: allocator
                    )
                } else {
                    let location = "/" + path.components.map(DirectoryListing.percentEncode).joined(separator: "/") + "/"
                    response = simple(.movedPermanently, "moved to \(location)\n", request: request, allocator: allocator, extra: .location(location))
                }
            case .file(let descriptor, let info):
                response = openedFile(request, path, relative, descriptor, info, allocator: allocator)
            }
        }
        response.project = project
        return response
    }

    /// The answer to a request that could not be parsed (or a refused connection): always closes.
    func reject(_ status: HTTPStatus, _ why: String, allocator: ByteBufferAllocator, extra: ExtraField? = nil) -> MirrorResponse {
        let body = why + "\n"
        var head = ResponseHead(status, date: clock.httpDate, allocator: allocator, bodyCapacity: body.utf8.count)
        head.add("Content-Type", "text/plain; charset=utf-8")
        head.add("Content-Length", Int64(body.utf8.count))
        if let extra { extra.add(to: &head) }
        head.add("Connection", "close")
        head.end()
        head.writeBody(body)
        return MirrorResponse(status: status, bytes: head.buffer, bodyInBytes: Int64(body.utf8.count), file: nil, keepAlive: false, project: "")
    }

    // MARK: - Projects in cache mode

    /// A request into a project in cache mode: a fresh cached file is served here and now (HIT);
    /// anything else is the cache's to answer (`cacheQuery`), once it asked the origin.
    private mutating func cached(_ request: HTTPRequest, _ path: RequestPath, _ cache: PullThroughCache, allocator: ByteBufferAllocator) -> MirrorResponse {
        let inside = Array(path.components.dropFirst())
        let relative = inside.joined(separator: "/")
        if inside.contains(where: RequestPath.isRsyncPartial) { return simple(.notFound, "not found\n", request: request, allocator: allocator) }
        // A hot small file: from this loop's memory, as for a mirrored one (kept apart by its key).
        let smallKey = "\u{1}" + cache.project + "/" + relative
        if !inside.isEmpty, let entry = self.cache.entry(for: relative, key: smallKey, resolver: cache.resolver, second: clock.second),
            case .fresh = cache.lookup(relative, cachedSize: entry.facts.info.size, pin: false)
        {
            let plain = request.method == .get && request.range == nil && request.ifNoneMatch == nil && request.ifModifiedSince == nil
            if plain, let bytes = entry.encodedResponse(second: clock.second, keepAlive: request.keepAlive) {
                return MirrorResponse(status: .ok, bytes: bytes, bodyInBytes: entry.facts.info.size, file: nil, keepAlive: request.keepAlive, project: "")
            }
            let response = file(request, entry.facts, body: .memory(entry.body), allocator: allocator, extra: .cache("HIT"))
            if plain, response.status == .ok, response.tail == nil { entry.remember(response.bytes, second: clock.second, keepAlive: request.keepAlive) }
            return response
        }
        switch cache.resolver.resolve(relative: relative.isEmpty ? "." : relative) {
        case .directory(let directory):
            // What is cached there; directories are never fetched (the origin's listing is not a file).
            guard path.trailingSlash || inside.isEmpty else {
                let location = "/" + path.components.map(DirectoryListing.percentEncode).joined(separator: "/") + "/"
                return simple(.movedPermanently, "moved to \(location)\n", request: request, allocator: allocator, extra: .location(location))
            }
            let shown = "/" + path.components.joined(separator: "/") + "/"
            return Self.deferred(
                .listing(relative: directory, shown: shown, json: Self.wantsJSON(request, path), cacheProject: cache.project), request: request, allocator: allocator
            )
        case .file(let descriptor, let info):
            guard case .fresh(let lease) = cache.lookup(relative, cachedSize: info.size) else {
                close(descriptor)
                return Self.cacheQuery(cache, relative, path, request: request, allocator: allocator)
            }
            // Only a file that stays as it is (no revalidation due) goes to the small-file cache.
            var response = openedFile(request, path, relative, descriptor, info, allocator: allocator, smallKey: smallKey, extra: .cache("HIT"))
            response.lease = lease
            return response
        case .notFound:
            guard !path.trailingSlash, !inside.isEmpty else { return simple(.notFound, "not found (not cached; directories are not fetched)\n", request: request, allocator: allocator) }
            _ = cache.lookup(relative, cachedSize: nil)
            return Self.cacheQuery(cache, relative, path, request: request, allocator: allocator)
        }
    }

    private static func cacheQuery(_ cache: PullThroughCache, _ relative: String, _ path: RequestPath, request: HTTPRequest, allocator: ByteBufferAllocator) -> MirrorResponse {
        MirrorResponse(
            status: .ok, bytes: allocator.buffer(capacity: 0), bodyInBytes: 0, file: nil, keepAlive: request.keepAlive, project: "", cacheQuery: (cache, relative, path)
        )
    }

    /// The response once the cache has its answer: the cached file (confirmed or stale), the body
    /// from the origin as it arrives, 404, or 502/504 saying what failed.
    mutating func cacheAnswer(
        to request: HTTPRequest, path: RequestPath, relative: String, cache: PullThroughCache, answer: PullThroughCache.Answer, allocator: ByteBufferAllocator
    ) -> MirrorResponse {
        switch answer {
        case .cached(let stale, let lease):
            guard case .file(let descriptor, let info) = cache.resolver.resolve(relative: relative) else {
                return simple(.notFound, "not found\n", request: request, allocator: allocator)
            }
            var response = openedFile(request, path, relative, descriptor, info, allocator: allocator, keepSmall: false, extra: .cache(stale ? "STALE" : "REVALIDATED"))
            response.lease = lease
            return response
        case .gone:
            return simple(.notFound, "not found (the origin does not have it)\n", request: request, allocator: allocator, cache: "no-store")
        case .redirect(let target):
            let location = "/" + DirectoryListing.percentEncode(cache.project) + "/" + target
            return simple(.movedPermanently, "moved to \(location)\n", request: request, allocator: allocator, cache: "no-store", extra: .location(location))
        case .failure(let failure):
            return simple(failure.timedOut ? .gatewayTimeout : .badGateway, "\(failure)\n", request: request, allocator: allocator, cache: "no-store")
        case .stream(let transfer, let head):
            return streamed(request, path, transfer, head, allocator: allocator)
        }
    }

    /// A file on its way from the origin: 200 or 206 (a range may lie beyond what has arrived) and
    /// the body sent as the transfer writes it.
    private func streamed(_ request: HTTPRequest, _ path: RequestPath, _ transfer: CacheTransfer, _ head: CacheTransfer.Head, allocator: ByteBufferAllocator) -> MirrorResponse {
        // Failed since the head arrived (a short body, a wrong hash): say so instead of starting a body.
        if case .failed(let failure) = transfer.phase {
            return simple(failure.timedOut ? .gatewayTimeout : .badGateway, "\(failure)\n", request: request, allocator: allocator, cache: "no-store")
        }
        // Without a Content-Length from the origin the cache waited for the whole file.
        let size = head.length ?? transfer.written
        var range: ClosedRange<Int64>?
        if let rangeHeader = request.range, request.ifRange == nil || request.ifRange == head.lastModified {
            switch ByteRange.parse(rangeHeader, size: size) {
            case .whole: break
            case .satisfiable(let r): range = r
            case .unsatisfiable:
                return simple(.rangeNotSatisfiable, "range not satisfiable\n", request: request, allocator: allocator, extra: .contentRange("bytes */\(size)"))
            }
        }
        let status: HTTPStatus = range == nil ? .ok : .partialContent
        let span = range ?? 0...max(0, size - 1)
        let length = size == 0 ? 0 : span.upperBound - span.lowerBound + 1
        var fields = ResponseHead(status, date: clock.httpDate, allocator: allocator)
        fields.add("Content-Type", MirrorContentType.type(for: path.components.last ?? ""))
        if let modified = head.lastModified { fields.add("Last-Modified", modified) }
        fields.add("Accept-Ranges", "bytes")
        fields.add("Cache-Control", MirrorContentType.cacheControl(for: path.components))
        ExtraField.cache("MISS").add(to: &fields)
        if let range { fields.add("Content-Range", "bytes \(range.lowerBound)-\(range.upperBound)/\(size)") }
        fields.add("Content-Length", length)
        fields.add("Connection", request.keepAlive ? "keep-alive" : "close")
        fields.end()
        guard request.method != .head, length > 0 else {
            return MirrorResponse(status: status, bytes: fields.buffer, bodyInBytes: 0, file: nil, keepAlive: request.keepAlive, project: "")
        }
        let descriptor = dup(transfer.readDescriptor)
        guard descriptor >= 0 else { return reject(.internalServerError, "cannot read the transfer: out of descriptors", allocator: allocator) }
        transfer.attach()
        return MirrorResponse(
            status: status, bytes: fields.buffer, bodyInBytes: 0, file: nil, keepAlive: request.keepAlive, project: "",
            stream: CacheStream(transfer: transfer, descriptor: descriptor, from: span.lowerBound, to: span.upperBound + 1, size: size)
        )
    }

    // MARK: - Files

    /// Where a file's body comes from.
    enum FileBody {
        /// Held in memory (a cached or just read small file).
        case memory(ByteBuffer)
        /// An open descriptor, sent with sendfile; whoever ends up not sending it closes it.
        case descriptor(Int32)
    }

    /// A file just opened beneath the root: small ones are read whole (and cached), larger ones sent
    /// from the descriptor.
    private mutating func openedFile(
        _ request: HTTPRequest, _ path: RequestPath, _ relative: String, _ fd: Int32, _ info: MirrorFileResolver.FileInfo, allocator: ByteBufferAllocator,
        keepSmall: Bool = true, smallKey: String? = nil, extra: ExtraField? = nil
    ) -> MirrorResponse {
        if lastModifiedCache.mtime != info.modified { lastModifiedCache = (info.modified, HTTPDate.format(info.modified)) }
        let facts = FileFacts(info: info, path: path, lastModified: lastModifiedCache.text, allocator: allocator)
        guard info.size <= Self.smallFileLimit else { return file(request, facts, body: .descriptor(fd), allocator: allocator, extra: extra) }
        var body = allocator.buffer(capacity: Int(info.size))
        let got = body.writeWithUnsafeMutableBytes(minimumWritableBytes: Int(info.size)) { memory in
            max(0, pread(fd, memory.baseAddress, Int(info.size), 0))
        }
        close(fd)
        guard got == Int(info.size) else {
            // The file shrank under us (a sync replaced it): the promised length cannot be kept.
            return reject(.internalServerError, "file changed while reading", allocator: allocator)
        }
        if keepSmall, cache.admits(size: info.size) {
            let key = smallKey ?? relative
            cache.insert(SmallFileCache.Entry(facts: facts, body: body, key: key, second: clock.second), for: key)
        }
        return file(request, facts, body: .memory(body), allocator: allocator, extra: extra)
    }

    /// The answer for a file: 304, 416, 206 or 200, HEAD or GET.
    private func file(_ request: HTTPRequest, _ facts: FileFacts, body: FileBody, allocator: ByteBufferAllocator, extra: ExtraField? = nil) -> MirrorResponse {
        func release() { if case .descriptor(let fd) = body { close(fd) } }
        let size = facts.info.size
        let isHead = request.method == .head
        if Conditional.notModified(request, etag: facts.etag, mtime: facts.info.modified) {
            release()
            var head = ResponseHead(.notModified, date: clock.httpDate, allocator: allocator)
            head.add(encoded: facts.fields)
            extra?.add(to: &head)
            head.add("Connection", request.keepAlive ? "keep-alive" : "close")
            head.end()
            return MirrorResponse(status: .notModified, bytes: head.buffer, bodyInBytes: 0, file: nil, keepAlive: request.keepAlive, project: "")
        }
        var range: ClosedRange<Int64>?
        if let rangeHeader = request.range, Conditional.ifRangeHolds(request, etag: facts.etag, lastModified: facts.lastModified) {
            switch ByteRange.parse(rangeHeader, size: size) {
            case .whole: break
            case .satisfiable(let r): range = r
            case .unsatisfiable:
                release()
                let text = "range not satisfiable\n"
                var head = ResponseHead(.rangeNotSatisfiable, date: clock.httpDate, allocator: allocator, bodyCapacity: text.utf8.count)
                head.add("Content-Range", "bytes */\(size)")
                head.add("Content-Length", Int64(text.utf8.count))
                head.add("Connection", request.keepAlive ? "keep-alive" : "close")
                head.end()
                if !isHead { head.writeBody(text) }
                return MirrorResponse(
                    status: .rangeNotSatisfiable, bytes: head.buffer, bodyInBytes: isHead ? 0 : Int64(text.utf8.count), file: nil,
                    keepAlive: request.keepAlive, project: ""
                )
            }
        }
        let status: HTTPStatus = range == nil ? .ok : .partialContent
        let span = range ?? 0...max(0, size - 1)
        let length = size == 0 ? 0 : span.upperBound - span.lowerBound + 1
        var copied = false
        if case .memory = body, !isHead, length <= Self.copyLimit { copied = true }
        var head = ResponseHead(status, date: clock.httpDate, allocator: allocator, bodyCapacity: copied ? Int(length) : 0)
        head.add(encoded: facts.fields)
        extra?.add(to: &head)
        if let range { head.add("Content-Range", "bytes \(range.lowerBound)-\(range.upperBound)/\(size)") }
        head.add("Content-Length", length)
        head.add("Connection", request.keepAlive ? "keep-alive" : "close")
        head.end()
        if isHead || length == 0 {
            release()
            return MirrorResponse(status: status, bytes: head.buffer, bodyInBytes: 0, file: nil, keepAlive: request.keepAlive, project: "")
        }
        switch body {
        case .memory(let bytes):
            var slice = bytes.getSlice(at: bytes.readerIndex + Int(span.lowerBound), length: Int(length))!
            if copied { head.writeBody(&slice) }
            return MirrorResponse(
                status: status, bytes: head.buffer, bodyInBytes: length, tail: copied ? nil : slice, file: nil, keepAlive: request.keepAlive, project: ""
            )
        case .descriptor(let fd):
            return MirrorResponse(
                status: status, bytes: head.buffer, bodyInBytes: 0, file: (fd, span.lowerBound, span.upperBound + 1), keepAlive: request.keepAlive,
                project: ""
            )
        }
    }

    /// A strong validator from inode, size and modification time (ns): a file replaced by a sync
    /// gets a new one even when its size and second do not change. `"inode-size-mtime(s)mtime(ns)"`
    /// in hex, written in one go.
    static func etag(_ info: MirrorFileResolver.FileInfo) -> String {
        String(unsafeUninitializedCapacity: 72) { out in
            var index = 0
            func put(_ byte: UInt8) {
                out[index] = byte
                index += 1
            }
            func hex(_ value: UInt64) {
                let digits = value == 0 ? 1 : (67 - value.leadingZeroBitCount) / 4
                for shift in stride(from: (digits - 1) * 4, through: 0, by: -4) {
                    let nibble = UInt8((value >> UInt64(shift)) & 0xf)
                    put(nibble < 10 ? 0x30 + nibble : 0x57 + nibble)
                }
            }
            put(UInt8(ascii: "\""))
            hex(info.inode)
            put(UInt8(ascii: "-"))
            hex(UInt64(max(0, info.size)))
            put(UInt8(ascii: "-"))
            hex(UInt64(max(0, info.modified)))
            hex(UInt64(max(0, info.modifiedNanoseconds)))
            put(UInt8(ascii: "\""))
            return index
        }
    }

    /// `?format=json` or `Accept: application/json` (listings and `/status`).
    private static func wantsJSON(_ request: HTTPRequest, _ path: RequestPath) -> Bool {
        path.query?.split(separator: "&").contains("format=json") == true || request.accept?.contains("application/json") == true
    }

    // MARK: - Listings and short answers

    /// A placeholder for an answer made on the thread pool (`answer(to:deferred:)` makes the real one).
    private static func deferred(_ answer: DeferredAnswer, request: HTTPRequest, allocator: ByteBufferAllocator) -> MirrorResponse {
        MirrorResponse(status: .ok, bytes: allocator.buffer(capacity: 0), bodyInBytes: 0, file: nil, keepAlive: request.keepAlive, project: "", deferred: answer)
    }

    /// The answer made from a deferred one's outcome: 200, or a 500 that says what failed (never an empty listing).
    func answer(
        to request: HTTPRequest, project: String, outcome: Result<(body: String, contentType: String, cache: String), any Error>, allocator: ByteBufferAllocator
    ) -> MirrorResponse {
        var response: MirrorResponse
        switch outcome {
        case .success(let made):
            response = simple(.ok, made.body, request: request, allocator: allocator, contentType: made.contentType, cache: made.cache)
        case .failure(let error):
            response = simple(.internalServerError, "\(error)\n", request: request, allocator: allocator, cache: "no-store")
        }
        response.project = project
        return response
    }

    private func simple(
        _ status: HTTPStatus, _ body: String, request: HTTPRequest, allocator: ByteBufferAllocator, contentType: String = "text/plain; charset=utf-8",
        cache: String? = nil, extra: ExtraField? = nil, malformed: Bool = false
    ) -> MirrorResponse {
        // A 404 or 405 keeps the connection (apt and dnf meet them all the time); a request that
        // could not be understood closes it, as what follows it is suspect.
        let keepAlive = request.keepAlive && !malformed
        let sendsBody = request.method != .head
        let length = body.utf8.count
        var head = ResponseHead(status, date: clock.httpDate, allocator: allocator, bodyCapacity: sendsBody ? length : 0)
        head.add("Content-Type", contentType)
        if let cache { head.add("Cache-Control", cache) }
        if let extra { extra.add(to: &head) }
        head.add("Content-Length", Int64(length))
        head.add("Connection", keepAlive ? "keep-alive" : "close")
        head.end()
        if sendsBody { head.writeBody(body) }
        return MirrorResponse(status: status, bytes: head.buffer, bodyInBytes: sendsBody ? Int64(length) : 0, file: nil, keepAlive: keepAlive, project: "")
    }
}
