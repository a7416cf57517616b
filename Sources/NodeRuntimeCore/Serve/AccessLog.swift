import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// The access log in nginx's "combined" format, with the body bytes actually handed to the client.
///
/// Lines recorded on an event loop gather in that loop's buffer and reach the file when 32 KiB
/// have gathered or a second has passed (as nginx's `access_log ... buffer= flush=`), and at
/// shutdown (`flush()`); a crash loses at most the last second. The write(2) itself happens on the
/// thread pool, never on an event loop (a slow disk must not stall serving). The file rotates
/// itself by size and reopens its path on `reopen()` (SIGHUP).
public final class AccessLog: Sendable {
    private let file: AccessLogFile
    private let threadPool: NIOThreadPool
    /// One buffer per event-loop thread, and a list of them all for `flush()`.
    private let buffers = ThreadSpecificVariable<LineBuffer>()
    private let allBuffers = NIOLockedValueBox<[LineBuffer]>([])
    /// Full buffers on their way to the file, and whether a write is scheduled on the pool.
    private let queue = NIOLockedValueBox<(batches: [ByteBuffer], scheduled: Bool)>(([], false))
    /// A buffer is written when it holds this much.
    static let bufferLimit = 32 << 10
    /// ... or when its oldest line is this old.
    static let flushInterval = TimeAmount.seconds(1)

    /// Opens (appends to) `path`, rotated past `rotateBytes` keeping `keep` old files; writes on
    /// `threadPool`, which must be running.
    public init(path: String, rotateBytes: Int64 = 64 << 20, keep: Int = 5, threadPool: NIOThreadPool = .singleton) throws {
        self.file = try AccessLogFile(path: path, rotateBytes: rotateBytes, keep: keep)
        self.threadPool = threadPool
    }

    deinit { flush() }

    /// One event loop's pending lines. Its lock is only ever contended by `flush()`.
    private final class LineBuffer: @unchecked Sendable {
        let lock = NIOLock()
        var bytes = ByteBuffer()
        var flushScheduled = false

        /// The lines so far, leaving an empty buffer with room for the next batch (caller holds the lock).
        func take() -> ByteBuffer {
            defer { bytes = ByteBufferAllocator().buffer(capacity: AccessLog.bufferLimit + 4096) }
            return bytes
        }
    }

    /// Adds one line to the calling event loop's buffer.
    public func record(_ entry: Entry, on eventLoop: any EventLoop) {
        let buffer = buffers.value {
            let made = LineBuffer()
            allBuffers.withLockedValue { $0.append(made) }
            return made
        }
        buffer.lock.withLock {
            buffer.bytes.writeWithUnsafeMutableBytes(minimumWritableBytes: Self.capacity(for: entry)) { memory in
                var out = ByteWriter(memory)
                Self.write(entry, to: &out)
                return out.count
            }
            if buffer.bytes.readableBytes >= Self.bufferLimit {
                enqueue(buffer.take())
            } else if !buffer.flushScheduled {
                buffer.flushScheduled = true
                eventLoop.scheduleTask(in: Self.flushInterval) { [self] in
                    let lines = buffer.lock.withLock {
                        buffer.flushScheduled = false
                        return buffer.take()
                    }
                    if lines.readableBytes > 0 { enqueue(lines) }
                }
            }
        }
    }

    /// Hands lines to the pool's writer; one write task at a time keeps batches in order.
    private func enqueue(_ lines: ByteBuffer) {
        let submit = queue.withLockedValue { queue in
            queue.batches.append(lines)
            defer { queue.scheduled = true }
            return !queue.scheduled
        }
        if submit { threadPool.submit { [self] _ in writeQueued() } }
    }

    private func writeQueued() {
        file.append {
            queue.withLockedValue { queue in
                defer { queue = ([], false) }
                return queue.batches
            }
        }
    }

    /// Writes every buffered line now, on the calling thread (shutdown, tests); when it returns,
    /// every line recorded before is in the file.
    public func flush() {
        file.append {
            var batches = queue.withLockedValue { queue in
                defer { queue.batches = [] }
                return queue.batches
            }
            for buffer in allBuffers.withLockedValue({ $0 }) { batches.append(buffer.lock.withLock { buffer.take() }) }
            return batches
        }
    }

    /// Opens the log's path afresh (logrotate moved it away; SIGHUP).
    public func reopen() { file.reopen() }

    /// Writes one line now, on the calling thread.
    public func record(_ entry: Entry) {
        var line = ByteBuffer()
        line.writeWithUnsafeMutableBytes(minimumWritableBytes: Self.capacity(for: entry)) { memory in
            var out = ByteWriter(memory)
            Self.write(entry, to: &out)
            return out.count
        }
        file.append { [line] }
    }

    public struct Entry: Sendable {
        public var client: String
        /// When the request ended, as `10/Oct/2000:13:55:36 +0000` (`AccessLog.timestamp`).
        public var time: String
        /// The request line's three parts; an empty method for a request that could not be parsed (logged as `-`).
        public var method: String
        public var target: String
        public var version: String
        public var status: Int
        public var bodyBytes: Int64
        public var referer: String?
        public var userAgent: String?
    }

    /// `client - - [10/Oct/2000:13:55:36 +0000] "GET /x HTTP/1.1" 200 2326 "referer" "agent"`
    public static func format(_ e: Entry) -> String {
        withLine(e) { String(decoding: $0.dropLast(), as: UTF8.self) }
    }

    /// The CLF timestamp for `date`.
    public static func timestamp(_ date: Date) -> String { formatCLF(Int(date.timeIntervalSince1970)) }

    /// Builds the line, newline included, in a temporary buffer.
    static func withLine<T>(_ e: Entry, _ body: (UnsafeRawBufferPointer) -> T) -> T {
        withUnsafeTemporaryAllocation(byteCount: capacity(for: e), alignment: 1) { memory in
            var out = ByteWriter(memory)
            write(e, to: &out)
            return body(UnsafeRawBufferPointer(rebasing: memory[..<out.count]))
        }
    }

    /// The most bytes a line can take (every client-controlled byte escaped to four).
    static func capacity(for e: Entry) -> Int {
        let escapedLength = e.method.utf8.count + e.target.utf8.count + (e.referer?.utf8.count ?? 1) + (e.userAgent?.utf8.count ?? 1)
        return 64 + e.client.utf8.count + e.time.utf8.count + e.version.utf8.count + 2 * ByteWriter.maxDecimal + 4 * escapedLength
    }

    static func write(_ e: Entry, to out: inout ByteWriter) {
        out.put(e.client)
        out.put(" - - [")
        out.put(e.time)
        out.put("] \"")
        if e.method.isEmpty {
            out.put(UInt8(ascii: "-"))
        } else {
            putEscaped(e.method, to: &out)
            out.put(UInt8(ascii: " "))
            putEscaped(e.target, to: &out)
            out.put(UInt8(ascii: " "))
            out.put(e.version)
        }
        out.put("\" ")
        out.putDecimal(Int64(e.status))
        out.put(UInt8(ascii: " "))
        out.putDecimal(e.bodyBytes)
        out.put(" \"")
        putEscaped(e.referer ?? "-", to: &out)
        out.put("\" \"")
        putEscaped(e.userAgent ?? "-", to: &out)
        out.put("\"\n")
    }

    /// Printable ASCII as is; quotes, backslashes, control and non-ASCII bytes as `\xHH` (as nginx
    /// does), so a hostile User-Agent cannot forge log lines.
    static func putEscaped(_ text: String, to out: inout ByteWriter) {
        var text = text
        text.withUTF8 { bytes in
            // Almost always plain: copy it whole.
            if !bytes.contains(where: { $0 < 0x20 || $0 >= 0x7f || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") }) {
                out.put(UnsafeRawBufferPointer(bytes))
                return
            }
            for byte in bytes {
                if byte >= 0x20, byte < 0x7f, byte != UInt8(ascii: "\""), byte != UInt8(ascii: "\\") {
                    out.put(byte)
                } else {
                    out.put(UInt8(ascii: "\\"))
                    out.put(UInt8(ascii: "x"))
                    out.put(hexDigits[Int(byte >> 4)])
                    out.put(hexDigits[Int(byte & 0xf)])
                }
            }
        }
    }

    private static let hexDigits: [UInt8] = Array("0123456789ABCDEF".utf8)

    static func formatCLF(_ second: Int) -> String {
        var t = time_t(second)
        var parts = tm()
        gmtime_r(&t, &parts)
        var buffer = [CChar](repeating: 0, count: 64)
        strftime(&buffer, buffer.count, "%d/%b/%Y:%H:%M:%S +0000", &parts)
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
