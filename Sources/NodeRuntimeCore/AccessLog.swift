import Foundation

/// The access log in nginx's "combined" format, with the body bytes actually handed to the client.
public final class AccessLog: Sendable {
    private let descriptor: Int32

    /// Opens (appends to) `path`.
    public init(path: String) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o640)
        guard fd >= 0 else { throw AccessLogError(path: path, code: errno) }
        self.descriptor = fd
    }

    deinit { close(descriptor) }

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

    /// Writes one line (a single O_APPEND write, so lines never interleave).
    public func record(_ entry: Entry) {
        Self.withLine(entry) { line in
            // O_APPEND: the kernel appends each write whole, so threads need no lock of their own.
            _ = write(descriptor, line.baseAddress, line.count)
        }
    }

    /// `client - - [10/Oct/2000:13:55:36 +0000] "GET /x HTTP/1.1" 200 2326 "referer" "agent"`
    public static func format(_ e: Entry) -> String {
        withLine(e) { String(decoding: $0.dropLast(), as: UTF8.self) }
    }

    /// The CLF timestamp for `date`.
    public static func timestamp(_ date: Date) -> String { formatCLF(Int(date.timeIntervalSince1970)) }

    /// Builds the line, newline included, in one buffer sized for the worst case (every byte escaped).
    static func withLine<T>(_ e: Entry, _ body: (UnsafeRawBufferPointer) -> T) -> T {
        let escapedLength = e.method.utf8.count + e.target.utf8.count + (e.referer?.utf8.count ?? 1) + (e.userAgent?.utf8.count ?? 1)
        let capacity = 64 + e.client.utf8.count + e.time.utf8.count + e.version.utf8.count + 2 * ByteWriter.maxDecimal + 4 * escapedLength
        return withUnsafeTemporaryAllocation(byteCount: capacity, alignment: 1) { memory in
            var out = ByteWriter(memory)
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
            return body(UnsafeRawBufferPointer(rebasing: memory[..<out.count]))
        }
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
