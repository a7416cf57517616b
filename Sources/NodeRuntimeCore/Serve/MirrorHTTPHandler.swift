import Foundation
import NIOCore

/// The whole HTTP/1.1 connection in one handler: admission (connection limits), request parsing,
/// pipelining, keep-alive and slow-client deadlines, writing responses, the access log and counters.
///
/// One handler instead of NIO's decoder, encoder, pipelining and idle handlers: a response is one
/// buffer written once (plus sendfile for larger files), pipelined answers go out in one flush per
/// read, and an idle connection holds no buffers at all.
final class MirrorHTTPHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = IOData

    private enum State {
        /// Waiting for (or parsing) the next request head.
        case waiting
        /// A response body is still being handed to the kernel; later requests wait in `pending`.
        case sending
        /// The connection is going away; nothing more is read or answered.
        case closing
    }

    private let shared: ServeContext
    private let limiter: ConnectionLimiter
    private var responder: MirrorResponder
    private let clock: LoopClock
    private var state = State.waiting
    /// The client's address once admitted (its slot is given back when the connection ends).
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

    /// When the wait for the current request head began, and how long it may take in all.
    private var waitingSince = NIODeadline.now()
    private var headAllowance = TimeAmount.seconds(12)
    private var lastRead = NIODeadline.now()
    /// The event loop's request counts (published to the shared counters every second).
    private let tally: ServeMetrics.Tally
    /// One deadline timer per connection, re-armed only when it fires.
    private var timer: Scheduled<Void>?

    /// Made on the connection's event loop: `clock` and `eventLoop` are that loop's.
    init(context: ServeContext, limiter: ConnectionLimiter, clock: LoopClock, eventLoop: any EventLoop) {
        self.shared = context
        self.limiter = limiter
        self.clock = clock
        self.tally = context.metrics.tally(on: eventLoop)
        self.responder = MirrorResponder(shared: context, clock: clock, tally: tally)
    }

    // MARK: - Connection lifecycle

    func channelActive(context: ChannelHandlerContext) {
        client = context.remoteAddress?.ipAddress ?? "-"
        allocator = context.channel.allocator
        switch limiter.acquire(client) {
        case .admitted:
            admitted = client
            clock.update()
            startWaiting(context, afterResponse: false)
        case .tooManyFromAddress, .tooManyInAll:
            // Refused before any parsing: a short 503 that tells accelerators to back off.
            state = .closing
            clock.update()
            let refusal = responder.reject(
                .serviceUnavailable, "too many connections from \(client); retry later", allocator: allocator, extra: .retryAfter(10)
            )
            context.writeAndFlush(wrapOutboundOut(.byteBuffer(refusal.bytes))).assumeIsolated().whenComplete { _ in context.close(promise: nil) }
        }
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        if let admitted { limiter.release(admitted) }
        admitted = nil
        state = .closing
        pending = nil
        timer?.cancel()
        timer = nil
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) { timer?.cancel() }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        state = .closing
        context.close(promise: nil)
    }

    // MARK: - Reading

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard state != .closing else { return }
        var incoming = unwrapInboundIn(data)
        lastRead = .now()
        if pending == nil {
            pending = incoming
        } else {
            pending!.writeBuffer(&incoming)
        }
        if state == .waiting {
            process(context)
        }
        if state == .sending, let pending, pending.readableBytes > Self.pendingLimit {
            pauseReading(context)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        flushIfNeeded(context)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        writable = context.channel.isWritable
        if writable, state == .waiting {
            resume(context)
        }
        context.fireChannelWritabilityChanged()
    }

    /// Answers every whole request in `pending`, in order, until one needs more time (sendfile),
    /// the socket's send buffer is full, or the connection is to close.
    private func process(_ context: ChannelHandlerContext) {
        while state == .waiting, var buffer = pending {
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
        if readingPaused, state != .closing, writable {
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
        if let file = response.file {
            state = .sending
            context.write(wrapOutboundOut(.byteBuffer(response.bytes)), promise: nil)
            let handle = NIOFileHandle(_deprecatedTakingOwnershipOfDescriptor: file.descriptor)
            sendChunks(context, request, response, handle, from: file.from, to: file.to, sent: 0)
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
        if response.keepAlive {
            state = .waiting
            startWaiting(context, afterResponse: true)
        } else {
            state = .closing
            pending = nil
        }
    }

    // MARK: - Deadlines

    /// Between requests the keep-alive timeout applies (no bytes for that long: closed); once a head
    /// has begun, the whole head must arrive within the head timeout however slowly its bytes
    /// trickle in (slowloris). A transfer in progress is never cut by either.
    private func startWaiting(_ context: ChannelHandlerContext, afterResponse: Bool) {
        waitingSince = .now()
        headAllowance = afterResponse ? shared.headTimeout + shared.keepAlive : shared.headTimeout
        if timer == nil { schedule(context, at: waitingSince + shared.keepAlive) }
    }

    private func schedule(_ context: ChannelHandlerContext, at deadline: NIODeadline) {
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        timer = context.eventLoop.scheduleTask(deadline: deadline) {
            let (handler, context) = bound.value
            handler.timer = nil
            handler.deadlineReached(context)
        }
    }

    private func deadlineReached(_ context: ChannelHandlerContext) {
        let keepAlive = shared.keepAlive
        switch state {
        case .closing:
            return
        case .sending:
            schedule(context, at: .now() + keepAlive)
        case .waiting:
            let idleUntil = max(lastRead, waitingSince) + keepAlive
            let deadline = min(idleUntil, waitingSince + headAllowance)
            if NIODeadline.now() >= deadline {
                state = .closing
                context.close(promise: nil)
            } else {
                schedule(context, at: deadline)
            }
        }
    }
}

extension TimeAmount {
    init(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        self = .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }
}
