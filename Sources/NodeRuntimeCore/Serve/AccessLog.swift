import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// The access log in nginx's "combined" format, with the body bytes actually handed to the client.
///
/// Lines recorded on an event loop gather in that loop's buffer and reach the file in one write
/// when 32 KiB have gathered or a second has passed (as nginx's `access_log ... buffer= flush=`),
/// and at shutdown (`flush()`); a crash loses at most the last second. Lines recorded elsewhere are
/// written at once.
public final class AccessLog: Sendable {
    private let descriptor: Int32
    /// One buffer per event-loop thread, and a list of them all for `flush()`.
    private let buffers = ThreadSpecificVariable<LineBuffer>()
    private let allBuffers = NIOLockedValueBox<[LineBuffer]>([])
    /// A buffer is written when it holds this much.
    static let bufferLimit = 32 << 10
    /// ... or when its oldest line is this old.
    static let flushInterval = TimeAmount.seconds(1)

    /// Opens (appends to) `path`.
    public init(path: String) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o640)
        guard fd >= 0 else { throw AccessLogError(path: path, code: errno) }
        self.descriptor = fd
    }

    deinit {
        flush()
        close(descriptor)
    }

    /// One event loop's pending lines. Its lock is only ever contended by `flush()`.
    private final class LineBuffer: @unchecked Sendable {
        let lock = NIOLock()
        var bytes = ByteBuffer()
        var flushScheduled = false
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
                write(buffer)
            } else if !buffer.flushScheduled {
                buffer.flushScheduled = true
                eventLoop.scheduleTask(in: Self.flushInterval) { [self] in
                    buffer.lock.withLock {
                        buffer.flushScheduled = false
                        write(buffer)
                    }
                }
            }
        }
    }

    /// Writes every buffered line now (shutdown, tests).
    public func flush() {
        for buffer in allBuffers.withLockedValue({ $0 }) {
            buffer.lock.withLock { write(buffer) }
        }
    }

    /// Writes one line now.
    public func record(_ entry: Entry) {
        Self.withLine(entry) { line in _ = Glibc.write(descriptor, line.baseAddress, line.count) }
    }

    /// Hands a buffer's lines to the file (caller holds its lock). O_APPEND: the kernel appends each
    /// write whole, and every write holds whole lines, so lines never interleave.
    private func write(_ buffer: LineBuffer) {
        guard buffer.bytes.readableBytes > 0 else { return }
        buffer.bytes.withUnsafeReadableBytes { _ = Glibc.write(descriptor, $0.baseAddress, $0.count) }
        buffer.bytes.clear()
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

public struct AccessLogError: Error, CustomStringConvertible {
    public var path: String
    public var code: Int32
    public var description: String { "cannot open access log \(path): \(String(cString: strerror(code)))" }
}
