import Foundation
import NIOConcurrencyHelpers

/// The access log in nginx's "combined" format, with the body bytes actually handed to the client.
public final class AccessLog: Sendable {
    private let descriptor: Int32
    private let lock = NIOLock()

    /// Opens (appends to) `path`.
    public init(path: String) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o640)
        guard fd >= 0 else { throw AccessLogError(path: path, code: errno) }
        self.descriptor = fd
    }

    deinit { close(descriptor) }

    public struct Entry: Sendable {
        public var client: String
        public var time: Date
        public var requestLine: String
        public var status: Int
        public var bodyBytes: Int64
        public var referer: String?
        public var userAgent: String?
    }

    /// Writes one line (a single O_APPEND write, so lines never interleave).
    public func record(_ entry: Entry) {
        let line = Self.format(entry) + "\n"
        lock.withLock {
            _ = line.withCString { write(descriptor, $0, strlen($0)) }
        }
    }

    /// `client - - [10/Oct/2000:13:55:36 +0000] "GET /x HTTP/1.1" 200 2326 "referer" "agent"`
    public static func format(_ e: Entry) -> String {
        "\(e.client) - - [\(clfDate(e.time))] \"\(escape(e.requestLine))\" \(e.status) \(e.bodyBytes) \"\(escape(e.referer ?? "-"))\" \"\(escape(e.userAgent ?? "-"))\""
    }

    static func escape(_ text: String) -> String {
        // Almost every field is plain printable ASCII: return it untouched.
        if text.utf8.allSatisfy({ $0 >= 0x20 && $0 < 0x7f && $0 != UInt8(ascii: "\"") && $0 != UInt8(ascii: "\\") }) { return text }
        var out = ""
        for scalar in text.unicodeScalars {
            if scalar == "\"" || scalar == "\\" || scalar.value < 0x20 || scalar.value >= 0x7f {
                out += scalar.value <= 0xff ? String(format: "\\x%02X", scalar.value) : "?"
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
        return out
    }

    static func clfDate(_ date: Date) -> String {
        var t = time_t(date.timeIntervalSince1970)
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
