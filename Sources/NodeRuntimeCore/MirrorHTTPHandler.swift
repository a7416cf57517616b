import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1

/// Everything a connection's handler shares with the server.
public struct ServeContext: Sendable {
    public var configuration: ServeConfiguration
    public var resolver: MirrorFileResolver
    public var accessLog: AccessLog?
    public var metrics: ServeMetrics
}

/// Serves GET and HEAD of files and directory listings, one request at a time per connection
/// (HTTPServerPipelineHandler in front of it queues pipelined requests).
final class MirrorHTTPHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let shared: ServeContext
    private var request: HTTPRequestHead?
    private var responding = false
    private var headDeadline: Scheduled<Void>?
    private var client = "-"
    /// The first path component of the request being answered (the project), for the metrics.
    private var project = ""

    init(context: ServeContext) { self.shared = context }

    /// Files up to this size are read and written from memory rather than with sendfile.
    static let smallFileLimit: Int64 = 64 << 10

    func handlerAdded(context: ChannelHandlerContext) {
        client = context.remoteAddress?.ipAddress ?? "-"
        armHeadDeadline(context)
    }

    func handlerRemoved(context: ChannelHandlerContext) { headDeadline?.cancel() }

    /// When the wait for the current request head began (nil while a request is being answered).
    private var waitingSince: NIODeadline?
    private var allowance = TimeAmount.seconds(10)

    /// A request head must arrive in time, however slowly its bytes trickle in (slowloris). Between
    /// requests the keep-alive timeout comes first: an idle client is closed by the idle handler.
    /// One timer per connection is re-armed only when it fires, not per request.
    private func armHeadDeadline(_ context: ChannelHandlerContext, afterResponse: Bool = false) {
        waitingSince = .now()
        allowance = TimeAmount(shared.configuration.requestHeadTimeout + (afterResponse ? shared.configuration.keepAliveTimeout : .zero))
        if headDeadline == nil { scheduleDeadlineCheck(context, at: waitingSince! + allowance) }
    }

    private func scheduleDeadlineCheck(_ context: ChannelHandlerContext, at deadline: NIODeadline) {
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        headDeadline = context.eventLoop.scheduleTask(deadline: deadline) {
            let (handler, context) = loopBound.value
            handler.headDeadline = nil
            guard let since = handler.waitingSince else {
                // Answering a request: look again one allowance from now.
                handler.scheduleDeadlineCheck(context, at: .now() + handler.allowance)
                return
            }
            if NIODeadline.now() >= since + handler.allowance {
                context.close(promise: nil)
            } else {
                handler.scheduleDeadlineCheck(context, at: since + handler.allowance)
            }
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        // Keep-alive: a connection idle between requests for the timeout is closed. Idle while we
        // are sending a long file is fine.
        if event is IdleStateHandler.IdleStateEvent, !responding, request == nil {
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            waitingSince = nil
            request = head
        case .body:
            break  // GET and HEAD have no body; anything else is refused at .end
        case .end:
            guard let head = request else { return }
            request = nil
            responding = true
            respond(context, head)
        }
    }

    // MARK: - Routing

    private func respond(_ context: ChannelHandlerContext, _ head: HTTPRequestHead) {
        project = ""
        // The decoder bounds each field and the total; count fields too (many tiny ones).
        let headerBytes = head.headers.reduce(0) { $0 + $1.name.utf8.count + $1.value.utf8.count + 4 }
        guard headerBytes <= shared.configuration.maxHeaderBytes, head.headers.count <= 200 else {
            return simple(context, head, .requestHeaderFieldsTooLarge, "request head too large\n")
        }
        guard head.method == .GET || head.method == .HEAD else {
            return simple(context, head, .methodNotAllowed, "only GET and HEAD are served here\n", extra: [("Allow", "GET, HEAD")])
        }
        let path: RequestPath
        switch RequestPath.parse(head.uri, maxLength: shared.configuration.maxURILength) {
        case .success(let parsed):
            path = parsed
            project = parsed.components.first ?? ""
        case .failure(.tooLong): return simple(context, head, .uriTooLong, "request target too long\n")
        case .failure(.badRequest(let why)): return simple(context, head, .badRequest, "bad request: \(why)\n")
        }
        if path.components == ["metrics"] {
            return simple(context, head, .ok, shared.metrics.prometheusText(), contentType: "text/plain; version=0.0.4", cache: "no-store")
        }
        switch shared.resolver.resolve(path) {
        case .notFound:
            simple(context, head, .notFound, "not found\n")
        case .directory(let directory):
            guard path.trailingSlash || path.components.isEmpty else {
                let location = "/" + path.components.map(DirectoryListing.percentEncode).joined(separator: "/") + "/"
                return simple(context, head, .movedPermanently, "moved to \(location)\n", extra: [("Location", location)])
            }
            listing(context, head, path, directory)
        case .file(let descriptor, let info):
            serveFile(context, head, path, descriptor, info)
        }
    }

    private func listing(_ context: ChannelHandlerContext, _ head: HTTPRequestHead, _ path: RequestPath, _ directory: String) {
        let entries = DirectoryListing.entries(of: directory, resolver: shared.resolver)
        let shown = "/" + path.components.joined(separator: "/") + (path.components.isEmpty ? "" : "/")
        let wantsJSON = path.query?.split(separator: "&").contains("format=json") == true
            || head.headers["Accept"].contains { $0.contains("application/json") }
        if wantsJSON {
            simple(context, head, .ok, DirectoryListing.json(path: shown, entries: entries), contentType: "application/json", cache: "max-age=60, must-revalidate")
        } else {
            simple(
                context, head, .ok, DirectoryListing.html(path: shown, entries: entries, sponsor: shared.configuration.sponsor),
                contentType: "text/html; charset=utf-8", cache: "max-age=60, must-revalidate"
            )
        }
    }

    // MARK: - Files

    private func serveFile(
        _ context: ChannelHandlerContext, _ head: HTTPRequestHead, _ path: RequestPath, _ fd: Int32, _ info: MirrorFileResolver.FileInfo
    ) {
        let size = info.size
        let mtime = info.modified
        let etag = "\"\(String(info.inode, radix: 16))-\(String(size, radix: 16))-\(String(mtime, radix: 16))\(String(info.modifiedNanoseconds, radix: 16))\""
        let lastModified = HTTPDate.format(mtime)
        var headers = baseHeaders(head)
        headers.add(name: "Content-Type", value: MirrorContentType.type(for: path.components.last ?? ""))
        headers.add(name: "Last-Modified", value: lastModified)
        headers.add(name: "ETag", value: etag)
        headers.add(name: "Accept-Ranges", value: "bytes")
        headers.add(name: "Cache-Control", value: MirrorContentType.cacheControl(for: path.components))

        if Conditional.notModified(head.headers, etag: etag, mtime: mtime) {
            close(fd)
            return send(context, head, .notModified, headers, body: nil)
        }
        var range: ClosedRange<Int64>?
        if let rangeHeader = head.headers.first(name: "Range"), Conditional.ifRangeHolds(head.headers, etag: etag, lastModified: lastModified) {
            switch ByteRange.parse(rangeHeader, size: size) {
            case .whole: break
            case .satisfiable(let r): range = r
            case .unsatisfiable:
                close(fd)
                headers.replaceOrAdd(name: "Content-Range", value: "bytes */\(size)")
                headers.remove(name: "Content-Type")
                return send(context, head, .rangeNotSatisfiable, headers, body: "range not satisfiable\n")
            }
        }
        let status: HTTPResponseStatus = range == nil ? .ok : .partialContent
        let span = range ?? 0...(size - 1)
        let length = size == 0 ? 0 : span.upperBound - span.lowerBound + 1
        if let range { headers.add(name: "Content-Range", value: "bytes \(range.lowerBound)-\(range.upperBound)/\(size)") }
        headers.add(name: "Content-Length", value: "\(length)")
        let keepAlive = head.isKeepAlive
        headers.add(name: "Connection", value: keepAlive ? "keep-alive" : "close")
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: headers))), promise: nil)
        if head.method == .HEAD || length == 0 {
            close(fd)
            finish(context, head, status, bodyBytes: 0, keepAlive: keepAlive)
            return
        }
        if length <= Self.smallFileLimit {
            // Small files: read them and send head and body in one write; cheaper than sendfile.
            var buffer = context.channel.allocator.buffer(capacity: Int(length))
            let got = buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: Int(length)) { pointer in
                max(0, pread(fd, pointer.baseAddress, Int(length), off_t(span.lowerBound)))
            }
            close(fd)
            guard got == Int(length) else {
                context.close(promise: nil)
                return
            }
            context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
            finish(context, head, status, bodyBytes: length, keepAlive: keepAlive)
            return
        }
        let handle = NIOFileHandle(_deprecatedTakingOwnershipOfDescriptor: fd)
        sendChunks(context, head, status, handle, from: span.lowerBound, to: span.upperBound + 1, sent: 0, keepAlive: keepAlive)
    }

    /// Hands the file to the kernel (sendfile) a chunk at a time; the next chunk is queued when the
    /// previous one was written, so the count of bytes sent is exact to the chunk and memory stays flat.
    private func sendChunks(
        _ context: ChannelHandlerContext, _ head: HTTPRequestHead, _ status: HTTPResponseStatus, _ handle: NIOFileHandle,
        from: Int64, to: Int64, sent: Int64, keepAlive: Bool
    ) {
        let end = min(from + Int64(shared.configuration.chunkSize), to)
        let region = FileRegion(fileHandle: handle, readerIndex: Int(from), endIndex: Int(end))
        context.writeAndFlush(wrapOutboundOut(.body(.fileRegion(region)))).assumeIsolated().whenComplete { result in
            switch result {
            case .success:
                let total = sent + (end - from)
                if end < to {
                    self.sendChunks(context, head, status, handle, from: end, to: to, sent: total, keepAlive: keepAlive)
                } else {
                    try? handle.close()
                    self.finish(context, head, status, bodyBytes: total, keepAlive: keepAlive)
                }
            case .failure:
                // The client went away mid-transfer: log what it got.
                try? handle.close()
                self.log(head, status, bodyBytes: sent)
                self.responding = false
                context.close(promise: nil)
            }
        }
    }

    // MARK: - Responses

    private func baseHeaders(_ head: HTTPRequestHead) -> HTTPHeaders {
        var headers = HTTPHeaders()
        headers.add(name: "Server", value: "micromirror")
        headers.add(name: "Date", value: DateHeaderCache.current())
        return headers
    }

    private func simple(
        _ context: ChannelHandlerContext, _ head: HTTPRequestHead, _ status: HTTPResponseStatus, _ body: String,
        contentType: String = "text/plain; charset=utf-8", cache: String? = nil, extra: [(String, String)] = []
    ) {
        var headers = baseHeaders(head)
        headers.add(name: "Content-Type", value: contentType)
        if let cache { headers.add(name: "Cache-Control", value: cache) }
        for (name, value) in extra { headers.add(name: name, value: value) }
        send(context, head, status, headers, body: body)
    }

    private func send(_ context: ChannelHandlerContext, _ head: HTTPRequestHead, _ status: HTTPResponseStatus, _ headers: HTTPHeaders, body: String?) {
        var headers = headers
        // An error answer to a request we could not parse sensibly closes the connection.
        let keepAlive = head.isKeepAlive && status.code < 400
        let bytes = body.map { Array($0.utf8) } ?? []
        if status != .notModified { headers.replaceOrAdd(name: "Content-Length", value: "\(bytes.count)") }
        headers.replaceOrAdd(name: "Connection", value: keepAlive ? "keep-alive" : "close")
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: headers))), promise: nil)
        var sent: Int64 = 0
        if head.method != .HEAD, !bytes.isEmpty {
            context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: bytes)))), promise: nil)
            sent = Int64(bytes.count)
        }
        finish(context, head, status, bodyBytes: sent, keepAlive: keepAlive)
    }

    private func finish(_ context: ChannelHandlerContext, _ head: HTTPRequestHead, _ status: HTTPResponseStatus, bodyBytes: Int64, keepAlive: Bool) {
        log(head, status, bodyBytes: bodyBytes)
        let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        responding = false
        if keepAlive {
            armHeadDeadline(context, afterResponse: true)
        } else {
            done.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
        }
    }

    private func log(_ head: HTTPRequestHead, _ status: HTTPResponseStatus, bodyBytes: Int64) {
        shared.metrics.record(project: project, status: Int(status.code), bytes: bodyBytes)
        shared.accessLog?.record(
            AccessLog.Entry(
                client: client, time: Date(), requestLine: "\(head.method.rawValue) \(head.uri) \(head.version)", status: Int(status.code),
                bodyBytes: bodyBytes, referer: head.headers.first(name: "Referer"), userAgent: head.headers.first(name: "User-Agent")
            )
        )
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

extension TimeAmount {
    init(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        self = .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }
}

/// The `Date` header, formatted once per second.
enum DateHeaderCache {
    private static let cache = NIOLockedValueBox((second: 0, text: ""))

    static func current() -> String {
        let now = Int(Date().timeIntervalSince1970)
        return cache.withLockedValue { entry in
            if entry.second != now { entry = (now, HTTPDate.format(now)) }
            return entry.text
        }
    }
}
