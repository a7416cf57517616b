import Foundation
import NIOCore

/// Everything a connection's handler shares with the server (one object, so a connection holds a
/// reference rather than its own copy of the configuration).
public final class ServeContext: Sendable {
    public let configuration: ServeConfiguration
    public let resolver: MirrorFileResolver
    public let accessLog: AccessLog?
    public let metrics: ServeMetrics
    /// The parser's limits, from the configuration.
    let limits: HTTPRequestParser.Limits

    public init(configuration: ServeConfiguration, resolver: MirrorFileResolver, accessLog: AccessLog?, metrics: ServeMetrics) {
        self.configuration = configuration
        self.resolver = resolver
        self.accessLog = accessLog
        self.metrics = metrics
        self.limits = HTTPRequestParser.Limits(maxTargetLength: configuration.maxURILength, maxHeadBytes: configuration.maxHeaderBytes, maxFields: 100)
    }
}

/// What to send for one request: the head (with the body when it is small) and, for larger files,
/// the part of an open file that follows it with sendfile.
struct MirrorResponse {
    var status: HTTPStatus
    /// The encoded head, and the whole body when `file` is nil.
    var bytes: ByteBuffer
    /// Body bytes inside `bytes` (0 for HEAD and 304).
    var bodyInBytes: Int64
    /// A file region sent after `bytes`: an open descriptor the sender closes, `from..<to`.
    var file: (descriptor: Int32, from: Int64, to: Int64)?
    var keepAlive: Bool
    /// The first path component (the project), for the per-project counters.
    var project: String
}

/// Decides the answer to a parsed request: routing, files, ranges, conditionals, listings, errors.
/// One per connection (it keeps a small cache); runs on the connection's event loop.
struct MirrorResponder {
    let shared: ServeContext
    /// The event loop's clock, for the `Date` header (the handler keeps it current).
    let clock: LoopClock
    /// Files up to this size are read into the response buffer rather than sent with sendfile.
    static let smallFileLimit: Int64 = 64 << 10
    /// The last `Last-Modified` text made, by mtime: mirrors serve the same files over and over.
    private var lastModifiedCache: (mtime: Int, text: String) = (-1, "")

    init(shared: ServeContext, clock: LoopClock) {
        self.shared = shared
        self.clock = clock
    }

    mutating func respond(to request: HTTPRequest, allocator: ByteBufferAllocator) -> MirrorResponse {
        let isHead = request.method == .head
        guard request.method == .get || isHead else {
            return simple(.methodNotAllowed, "only GET and HEAD are served here\n", request: request, allocator: allocator, extra: .allow)
        }
        if request.body == .chunked {
            return simple(.badRequest, "request bodies are not accepted\n", request: request, allocator: allocator)
        }
        let path: RequestPath
        switch RequestPath.parse(request.target, maxLength: shared.configuration.maxURILength) {
        case .success(let parsed): path = parsed
        case .failure(.tooLong): return simple(.uriTooLong, "request target too long\n", request: request, allocator: allocator)
        case .failure(.badRequest(let why)): return simple(.badRequest, "bad request: \(why)\n", request: request, allocator: allocator)
        }
        let project = path.components.first ?? ""
        if path.components == ["metrics"] {
            return simple(
                .ok, shared.metrics.prometheusText(), request: request, allocator: allocator, contentType: "text/plain; version=0.0.4", cache: "no-store"
            )
        }
        var response: MirrorResponse
        switch shared.resolver.resolve(path) {
        case .notFound:
            response = simple(.notFound, "not found\n", request: request, allocator: allocator)
        case .directory(let directory):
            if path.trailingSlash || path.components.isEmpty {
                response = listing(request, path, directory, allocator: allocator)
            } else {
                let location = "/" + path.components.map(DirectoryListing.percentEncode).joined(separator: "/") + "/"
                response = simple(.movedPermanently, "moved to \(location)\n", request: request, allocator: allocator, extra: .location(location))
            }
        case .file(let descriptor, let info):
            response = file(request, path, descriptor, info, allocator: allocator)
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

    // MARK: - Files

    private mutating func file(
        _ request: HTTPRequest, _ path: RequestPath, _ fd: Int32, _ info: MirrorFileResolver.FileInfo, allocator: ByteBufferAllocator
    ) -> MirrorResponse {
        let size = info.size
        let etag = Self.etag(info)
        if lastModifiedCache.mtime != info.modified { lastModifiedCache = (info.modified, HTTPDate.format(info.modified)) }
        let lastModified = lastModifiedCache.text
        let name = path.components.last ?? ""

        func fileHead(_ status: HTTPStatus, bodyCapacity: Int = 0) -> ResponseHead {
            var head = ResponseHead(status, date: clock.httpDate, allocator: allocator, bodyCapacity: bodyCapacity)
            head.add("Content-Type", MirrorContentType.type(for: name))
            head.add("Last-Modified", lastModified)
            head.add("ETag", etag)
            head.add("Accept-Ranges", "bytes")
            head.add("Cache-Control", MirrorContentType.cacheControl(for: path.components))
            return head
        }

        if Conditional.notModified(request, etag: etag, mtime: info.modified) {
            close(fd)
            var head = fileHead(.notModified)
            head.add("Connection", request.keepAlive ? "keep-alive" : "close")
            head.end()
            return MirrorResponse(status: .notModified, bytes: head.buffer, bodyInBytes: 0, file: nil, keepAlive: request.keepAlive, project: "")
        }
        var range: ClosedRange<Int64>?
        if let rangeHeader = request.range, Conditional.ifRangeHolds(request, etag: etag, lastModified: lastModified) {
            switch ByteRange.parse(rangeHeader, size: size) {
            case .whole: break
            case .satisfiable(let r): range = r
            case .unsatisfiable:
                close(fd)
                let body = "range not satisfiable\n"
                var head = ResponseHead(.rangeNotSatisfiable, date: clock.httpDate, allocator: allocator, bodyCapacity: body.utf8.count)
                head.add("Content-Range", "bytes */\(size)")
                head.add("Content-Length", Int64(body.utf8.count))
                head.add("Connection", "close")
                head.end()
                if !isHeadRequest(request) { head.writeBody(body) }
                return MirrorResponse(
                    status: .rangeNotSatisfiable, bytes: head.buffer, bodyInBytes: isHeadRequest(request) ? 0 : Int64(body.utf8.count), file: nil,
                    keepAlive: false, project: ""
                )
            }
        }
        let status: HTTPStatus = range == nil ? .ok : .partialContent
        let span = range ?? 0...max(0, size - 1)
        let length = size == 0 ? 0 : span.upperBound - span.lowerBound + 1
        let inMemory = isHeadRequest(request) || length <= Self.smallFileLimit
        var head = fileHead(status, bodyCapacity: inMemory && !isHeadRequest(request) ? Int(length) : 0)
        if let range { head.add("Content-Range", "bytes \(range.lowerBound)-\(range.upperBound)/\(size)") }
        head.add("Content-Length", length)
        head.add("Connection", request.keepAlive ? "keep-alive" : "close")
        head.end()
        if isHeadRequest(request) || length == 0 {
            close(fd)
            return MirrorResponse(status: status, bytes: head.buffer, bodyInBytes: 0, file: nil, keepAlive: request.keepAlive, project: "")
        }
        if inMemory {
            // Small files: head and body in one buffer, one write; cheaper than sendfile.
            let complete = head.readBody(from: fd, offset: span.lowerBound, count: Int(length))
            close(fd)
            guard complete else {
                // The file shrank under us (a sync replaced it): the promised length cannot be kept.
                return reject(.internalServerError, "file changed while reading", allocator: allocator)
            }
            return MirrorResponse(status: status, bytes: head.buffer, bodyInBytes: length, file: nil, keepAlive: request.keepAlive, project: "")
        }
        return MirrorResponse(
            status: status, bytes: head.buffer, bodyInBytes: 0, file: (fd, span.lowerBound, span.upperBound + 1), keepAlive: request.keepAlive,
            project: ""
        )
    }

    /// A strong validator from inode, size and modification time (ns): a file replaced by a sync
    /// gets a new one even when its size and second do not change.
    /// `"inode-size-mtime(s)mtime(ns)"` in hex, written in one go (it is made for every request).
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

    private func isHeadRequest(_ request: HTTPRequest) -> Bool { request.method == .head }

    // MARK: - Listings and short answers

    private func listing(_ request: HTTPRequest, _ path: RequestPath, _ directory: String, allocator: ByteBufferAllocator) -> MirrorResponse {
        let entries = DirectoryListing.entries(of: directory, resolver: shared.resolver)
        let shown = "/" + path.components.joined(separator: "/") + (path.components.isEmpty ? "" : "/")
        let wantsJSON = path.query?.split(separator: "&").contains("format=json") == true || request.accept?.contains("application/json") == true
        if wantsJSON {
            return simple(
                .ok, DirectoryListing.json(path: shown, entries: entries), request: request, allocator: allocator, contentType: "application/json",
                cache: "max-age=60, must-revalidate"
            )
        }
        return simple(
            .ok, DirectoryListing.html(path: shown, entries: entries, sponsor: shared.configuration.sponsor), request: request, allocator: allocator,
            contentType: "text/html; charset=utf-8", cache: "max-age=60, must-revalidate"
        )
    }

    private func simple(
        _ status: HTTPStatus, _ body: String, request: HTTPRequest, allocator: ByteBufferAllocator, contentType: String = "text/plain; charset=utf-8",
        cache: String? = nil, extra: ExtraField? = nil
    ) -> MirrorResponse {
        // An error answer closes the connection: after a request we refused, what follows is suspect.
        let keepAlive = request.keepAlive && status.code < 400
        let sendsBody = !isHeadRequest(request)
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

/// The few fields only some answers carry.
enum ExtraField {
    case allow
    case location(String)
    case retryAfter(Int64)

    func add(to head: inout ResponseHead) {
        switch self {
        case .allow: head.add("Allow", "GET, HEAD")
        case .location(let location): head.add("Location", location)
        case .retryAfter(let seconds): head.add("Retry-After", seconds)
        }
    }
}
