import Foundation
import NIOCore
import NIOPosix

/// The whole HTTP/1.1 connection in one handler: admission (connection limits), request parsing,
/// pipelining, writing responses, the access log and counters. What state the connection is in and
/// when it times out is `ConnectionStateMachine`'s to decide; this handler does the I/O.
///
/// One handler instead of NIO's decoder, encoder, pipelining and idle handlers: a response is one
/// buffer written once (plus sendfile for larger files), pipelined answers go out in one flush per
/// read, and an idle connection holds no buffers at all.
final class MirrorHTTPHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = IOData

    private let shared: ServeContext
    private let limiter: ConnectionLimiter
    private var responder: MirrorResponder
    private let clock: LoopClock
    private var machine: ConnectionStateMachine
    /// The client's limit key once admitted (its slot is given back when the connection ends).
    private var admitted: String?
    private var client = "-"

    /// Received bytes not yet answered; nil when there are none, so an idle connection holds no buffer.
    private var pending: ByteBuffer?
    /// How many bytes of `pending` are known to hold no whole head; parsing waits for a new line.
    private var scannedIncomplete = 0
    /// Request-body bytes (of a GET that carried one) still to skip.
    private var bodyToSkip: Int64 = 0
    private var needsFlush = false
    private var readingPaused = false
    /// The channel's writability, kept from `channelWritabilityChanged` (asking the channel per request costs).
    private var writable = true
    private var allocator = ByteBufferAllocator()
    /// Unanswered bytes a client may queue (pipelining) before reading pauses.
    private static let pendingLimit = 64 << 10

    /// The event loop's request counts (published to the shared counters every second).
    private let tally: ServeMetrics.Tally
    /// The connection's one deadline timer (see `ConnectionStateMachine.arm`).
    private var timer: Scheduled<Void>?
    /// Chunks completed in the current transfer, part of the progress the send timeout looks at.
    private var chunksSent: UInt64 = 0

    /// Made on the connection's event loop: `clock` and `eventLoop` are that loop's.
    init(context: ServeContext, limiter: ConnectionLimiter, clock: LoopClock, eventLoop: any EventLoop) {
        self.shared = context
        self.limiter = limiter
        self.clock = clock
        self.tally = context.metrics.tally(on: eventLoop)
        self.responder = MirrorResponder(shared: context, clock: clock, tally: tally)
        self.machine = ConnectionStateMachine(timeouts: context.timeouts)
    }

    // MARK: - Connection lifecycle

    func channelActive(context: ChannelHandlerContext) {
        let address = ClientAddress(context.remoteAddress, ipv6PrefixLength: shared.configuration.ipv6LimitPrefixLength)
        client = address.text
        allocator = context.channel.allocator
        switch limiter.acquire(address.limitKey) {
        case .admitted:
            admitted = address.limitKey
            clock.update()
            perform(context, machine.admitted(now: context.eventLoop.now))
        case .tooManyFromAddress, .tooManyInAll:
            // Refused before any parsing: a short 503 that tells accelerators to back off.
            _ = machine.close()
            clock.update()
            let refusal = responder.reject(
                .serviceUnavailable, "too many connections from \(address.limitKey); retry later", allocator: allocator, extra: .retryAfter(10)
            )
            context.writeAndFlush(wrapOutboundOut(.byteBuffer(refusal.bytes))).assumeIsolated().whenComplete { _ in context.close(promise: nil) }
        }
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        if let admitted { limiter.release(admitted) }
        admitted = nil
        _ = machine.close()
        pending = nil
        timer?.cancel()
        timer = nil
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) { timer?.cancel() }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        _ = machine.close()
        context.close(promise: nil)
    }

    // MARK: - Reading

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !machine.isClosing else { return }
        var incoming = unwrapInboundIn(data)
        machine.read(now: context.eventLoop.now)
        if pending == nil {
            pending = incoming
        } else {
            pending!.writeBuffer(&incoming)
        }
        if machine.isWaiting {
            process(context)
        }
        if !machine.isWaiting, !machine.isClosing, let pending, pending.readableBytes > Self.pendingLimit {
            pauseReading(context)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        flushIfNeeded(context)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        writable = context.channel.isWritable
        if writable, machine.isWaiting {
            resume(context)
        }
        context.fireChannelWritabilityChanged()
    }

    /// Answers every whole request in `pending`, in order, until one needs more time (sendfile),
    /// the socket's send buffer is full, or the connection is to close.
    private func process(_ context: ChannelHandlerContext) {
        while machine.isWaiting, var buffer = pending {
            if bodyToSkip > 0 {
                let skip = Int(min(Int64(buffer.readableBytes), bodyToSkip))
                buffer.moveReaderIndex(forwardBy: skip)
                bodyToSkip -= Int64(skip)
                pending = buffer.readableBytes > 0 ? buffer : nil
                continue
            }
            if !writable {
                // The client is not reading its answers: stop reading its requests until it does.
                flushIfNeeded(context)
                pauseReading(context)
                return
            }
            if scannedIncomplete > 0, !mayHoldHead(buffer) { return }
            clock.update()
            let outcome = buffer.withUnsafeReadableBytes { HTTPRequestParser.parse($0, limits: shared.limits) }
            switch outcome {
            case .incomplete:
                scannedIncomplete = buffer.readableBytes
                return
            case .reject(let status, let why):
                scannedIncomplete = 0
                pending = nil
                send(context, request: nil, responder.reject(status, why, allocator: allocator))
            case .request(let request, let consumed):
                scannedIncomplete = 0
                buffer.moveReaderIndex(forwardBy: consumed)
                pending = buffer.readableBytes > 0 ? buffer : nil
                if case .length(let length) = request.body { bodyToSkip = length }
                send(context, request: request, responder.respond(to: request, allocator: allocator))
            }
        }
    }

    /// Whether bytes that arrived since the last incomplete parse could finish the head (a new line)
    /// or break a limit; a client trickling bytes is not re-parsed for every one of them.
    private func mayHoldHead(_ buffer: ByteBuffer) -> Bool {
        guard buffer.readableBytes > scannedIncomplete else { return false }
        if buffer.readableBytes > min(shared.limits.maxHeadBytes, shared.limits.maxTargetLength + 32) { return true }
        return buffer.withUnsafeReadableBytes { bytes in
            memchr(bytes.baseAddress! + scannedIncomplete, Int32(UInt8(ascii: "\n")), bytes.count - scannedIncomplete) != nil
        }
    }

    private func pauseReading(_ context: ChannelHandlerContext) {
        guard !readingPaused else { return }
        readingPaused = true
        try? context.channel.syncOptions?.setOption(.autoRead, value: false)
    }

    /// Continues after a transfer finished or the socket drained: answer what is queued, read again.
    private func resume(_ context: ChannelHandlerContext) {
        process(context)
        flushIfNeeded(context)
        if readingPaused, !machine.isClosing, writable {
            readingPaused = false
            try? context.channel.syncOptions?.setOption(.autoRead, value: true)
        }
    }

    private func flushIfNeeded(_ context: ChannelHandlerContext) {
        if needsFlush {
            needsFlush = false
            context.flush()
        }
    }

    // MARK: - Writing

    private func send(_ context: ChannelHandlerContext, request: HTTPRequest?, _ response: MirrorResponse) {
        if let deferred = response.deferred, let request {
            prepare(context, request, response, deferred)
            return
        }
        if let query = response.cacheQuery, let request {
            askCache(context, request, response, query)
            return
        }
        if let stream = response.stream {
            streamChunks(context, request, response, stream, startSending(context, response, descriptor: stream.descriptor), at: stream.from)
            return
        }
        if let file = response.file {
            sendChunks(context, request, response, startSending(context, response, descriptor: file.descriptor), from: file.from, to: file.to, sent: 0)
            return
        }
        var last = response.bytes
        if let tail = response.tail {
            context.write(wrapOutboundOut(.byteBuffer(response.bytes)), promise: nil)
            last = tail
        }
        if response.keepAlive {
            context.write(wrapOutboundOut(.byteBuffer(last)), promise: nil)
            needsFlush = true
        } else {
            needsFlush = false
            context.writeAndFlush(wrapOutboundOut(.byteBuffer(last))).assumeIsolated().whenComplete { _ in context.close(promise: nil) }
        }
        finished(context, request, response, bodyBytes: response.bodyInBytes)
    }

    /// Writes the head of a response whose body comes from `descriptor` (a file or a transfer's),
    /// enters sending, and hands back the descriptor as the handle the chunks are sent from.
    private func startSending(_ context: ChannelHandlerContext, _ response: MirrorResponse, descriptor: Int32) -> NIOFileHandle {
        chunksSent = 0
        perform(context, machine.sendingStarted(now: context.eventLoop.now))
        context.write(wrapOutboundOut(.byteBuffer(response.bytes)), promise: nil)
        return NIOFileHandle(_deprecatedTakingOwnershipOfDescriptor: descriptor)
    }

    /// Hands the file to the kernel (sendfile) a chunk at a time; the next chunk is queued when the
    /// previous one was written, so the count of bytes sent is exact to the chunk and memory stays flat.
    private func sendChunks(
        _ context: ChannelHandlerContext, _ request: HTTPRequest?, _ response: MirrorResponse, _ handle: NIOFileHandle, from: Int64, to: Int64, sent: Int64
    ) {
        let end = min(from + Int64(shared.configuration.chunkSize), to)
        let region = FileRegion(fileHandle: handle, readerIndex: Int(from), endIndex: Int(end))
        needsFlush = false
        context.writeAndFlush(wrapOutboundOut(.fileRegion(region))).assumeIsolated().whenComplete { result in
            switch result {
            case .success:
                let total = sent + (end - from)
                self.chunksSent += 1
                self.machine.progressed(now: context.eventLoop.now)
                if end < to {
                    self.sendChunks(context, request, response, handle, from: end, to: to, sent: total)
                    return
                }
                try? handle.close()
                self.finished(context, request, response, bodyBytes: total)
                if response.keepAlive { self.resume(context) } else { context.close(promise: nil) }
            case .failure:
                // The client went away mid-transfer: log what it got.
                try? handle.close()
                var cut = response
                cut.keepAlive = false
                self.finished(context, request, cut, bodyBytes: sent)
                context.close(promise: nil)
            }
        }
    }

    /// A response was handed over: log and count it, then wait for the next request or close.
    private func finished(_ context: ChannelHandlerContext, _ request: HTTPRequest?, _ response: MirrorResponse, bodyBytes: Int64) {
        tally.request(project: response.project, status: response.status.code, bytes: bodyBytes)
        shared.accessLog?.record(
            AccessLog.Entry(
                client: client, time: clock.logDate, method: request?.method.name ?? "", target: request?.target ?? "",
                version: request?.version.minor == 0 ? "HTTP/1.0" : "HTTP/1.1", status: response.status.code, bodyBytes: bodyBytes,
                referer: request?.referer, userAgent: request?.userAgent
            ),
            on: context.eventLoop
        )
        perform(context, machine.responseFinished(now: context.eventLoop.now, keepAlive: response.keepAlive))
        if !response.keepAlive { pending = nil }
    }

    /// Makes an answer that blocks (a listing, `/status`) on the thread pool, then sends it and
    /// goes on with what is queued. Later requests wait meanwhile, so answers stay in order.
    private func prepare(_ context: ChannelHandlerContext, _ request: HTTPRequest, _ placeholder: MirrorResponse, _ deferred: DeferredAnswer) {
        machine.preparingStarted()
        flushIfNeeded(context)
        let shared = self.shared
        let bound = NIOLoopBound((self, context, request), eventLoop: context.eventLoop)
        shared.threadPool.runIfActive(eventLoop: context.eventLoop) { try deferred.make(shared) }.whenComplete { outcome in
            let (handler, context, request) = bound.value
            guard !handler.machine.isClosing else { return }
            handler.clock.update()
            let response = handler.responder.answer(
                to: request, project: placeholder.project, outcome: outcome, allocator: handler.allocator
            )
            handler.send(context, request: request, response)
            if response.keepAlive { handler.resume(context) } else { handler.flushIfNeeded(context) }
        }
    }

    /// Waits for a cache-mode project's answer, then
    /// sends it; later requests wait meanwhile, so answers stay in order.
    private func askCache(
        _ context: ChannelHandlerContext, _ request: HTTPRequest, _ placeholder: MirrorResponse, _ query: (cache: PullThroughCache, relative: String, path: RequestPath)
    ) {
        machine.preparingStarted()
        flushIfNeeded(context)
        let bound = NIOLoopBound((self, context, request), eventLoop: context.eventLoop)
        query.cache.answer(query.relative, on: context.eventLoop).whenSuccess { answer in
            let (handler, context, request) = bound.value
            guard !handler.machine.isClosing else { return }
            handler.clock.update()
            var response = handler.responder.cacheAnswer(
                to: request, path: query.path, relative: query.relative, cache: query.cache, answer: answer, allocator: handler.allocator
            )
            response.project = placeholder.project
            handler.send(context, request: request, response)
            if response.keepAlive { handler.resume(context) } else { handler.flushIfNeeded(context) }
        }
    }

    /// Sends a body from an origin transfer: what has been written, a chunk at a time, then waits
    /// for more. The transfer going on without this client (or failing) is not this client's to
    /// stop; a failed transfer cuts the response (its length can no longer be kept).
    private func streamChunks(
        _ context: ChannelHandlerContext, _ request: HTTPRequest?, _ response: MirrorResponse, _ stream: CacheStream, _ handle: NIOFileHandle, at position: Int64
    ) {
        let (phase, written) = stream.transfer.progress
        var available: Int64
        switch phase {
        case .complete: available = stream.to
        case .streaming: available = min(written, stream.to, stream.size - 1)
        default: available = -1
        }
        func end(sent: Int64, cut: Bool) {
            try? handle.close()
            stream.transfer.detach()
            var done = response
            if cut { done.keepAlive = false }
            finished(context, request, done, bodyBytes: sent)
            // Flushed first: a client cut off must see the head and what was sent (a short body), not nothing.
            if done.keepAlive { resume(context) } else { context.writeAndFlush(wrapOutboundOut(.byteBuffer(allocator.buffer(capacity: 0)))).assumeIsolated().whenComplete { _ in context.close(promise: nil) } }
        }
        if available < 0 {
            end(sent: position - stream.from, cut: true)
            return
        }
        guard position < available else {
            let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            stream.transfer.whenChanged(on: context.eventLoop, unless: { phase, written in
                switch phase {
                case .streaming: min(written, stream.size - 1) > position
                default: true
                }
            }) {
                let (handler, context) = bound.value
                guard !handler.machine.isClosing else {
                    // The client went away while waiting for the origin: log what it got.
                    try? handle.close()
                    stream.transfer.detach()
                    var cut = response
                    cut.keepAlive = false
                    handler.finished(context, request, cut, bodyBytes: position - stream.from)
                    return
                }
                handler.streamChunks(context, request, response, stream, handle, at: position)
            }
            return
        }
        let chunkEnd = min(position + Int64(shared.configuration.chunkSize), available)
        let region = FileRegion(fileHandle: handle, readerIndex: Int(position), endIndex: Int(chunkEnd))
        needsFlush = false
        context.writeAndFlush(wrapOutboundOut(.fileRegion(region))).assumeIsolated().whenComplete { result in
            switch result {
            case .success:
                self.chunksSent += 1
                self.machine.progressed(now: context.eventLoop.now)
                if chunkEnd < stream.to {
                    self.streamChunks(context, request, response, stream, handle, at: chunkEnd)
                } else {
                    end(sent: chunkEnd - stream.from, cut: false)
                }
            case .failure:
                // The client went away: the transfer goes on for the others and the cache.
                end(sent: position - stream.from, cut: true)
            }
        }
    }

    // MARK: - Deadlines

    /// Carries out the state machine's timer action.
    private func perform(_ context: ChannelHandlerContext, _ action: ConnectionStateMachine.TimerAction) {
        switch action {
        case .none:
            return
        case .close:
            timer?.cancel()
            timer = nil
            pending = nil
            context.close(promise: nil)
        case .schedule(let deadline):
            timer?.cancel()
            let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            timer = context.eventLoop.scheduleTask(deadline: deadline) {
                let (handler, context) = bound.value
                handler.timer = nil
                let mark = handler.machine.isSending ? handler.progressMark(context) : 0
                handler.perform(context, handler.machine.timerFired(now: context.eventLoop.now, mark: mark))
            }
        }
    }

    /// How much of what was sent the client has taken: TCP's acknowledged bytes where the kernel
    /// tells (`tcpi_bytes_acked`, Linux 4.1+), plus the chunks completed. A client that stops
    /// reading moves neither.
    private func progressMark(_ context: ChannelHandlerContext) -> UInt64 {
        var acked: UInt64 = 0
        if let provider = context.channel as? any SocketOptionProvider {
            let info: EventLoopFuture<TCPInfoPrefix> = provider.unsafeGetSocketOption(level: SocketOptionLevel(IPPROTO_TCP), name: SocketOptionName(TCP_INFO))
            // On the channel's own loop the future is already complete: this runs now.
            info.whenSuccess { acked = $0.bytesAcked }
        }
        return acked &+ chunksSent
    }
}

extension TimeAmount {
    init(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        self = .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }
}
