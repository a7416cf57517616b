import Foundation
import NIOCore

/// Writes an HTTP/1.1 response head straight into the buffer that goes to the socket, so a small
/// response (head and body) is one buffer and one write, with no header dictionary in between.
struct ResponseHead {
    private(set) var buffer: ByteBuffer

    /// Starts the head: status line, `Server` and `Date`. `bodyCapacity` reserves room for a body
    /// written after `end()`.
    init(_ status: HTTPStatus, date: String, allocator: ByteBufferAllocator, bodyCapacity: Int = 0) {
        buffer = allocator.buffer(capacity: 384 + bodyCapacity)
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: 64 + status.reason.utf8.count + date.utf8.count) { memory in
            var out = ByteWriter(memory)
            out.put("HTTP/1.1 ")
            out.putDecimal(Int64(status.code))
            out.put(UInt8(ascii: " "))
            out.put(status.reason)
            out.put("\r\nServer: micromirror\r\nDate: ")
            out.put(date)
            out.put("\r\n")
            return out.count
        }
    }

    /// Adds a field. Values are the server's own (never request text), so they hold no CR or LF.
    mutating func add(_ name: StaticString, _ value: String) { buffer.writeField(name, value) }

    mutating func add(_ name: StaticString, _ value: Int64) { buffer.writeField(name, value) }

    /// Adds fields encoded beforehand (`Fields`).
    mutating func add(encoded fields: ByteBuffer) {
        var fields = fields
        buffer.writeBuffer(&fields)
    }

    /// A block of fields encoded once and added to many heads (a cached file's).
    struct Fields {
        private(set) var buffer: ByteBuffer

        init(allocator: ByteBufferAllocator) { buffer = allocator.buffer(capacity: 256) }

        mutating func add(_ name: StaticString, _ value: String) { buffer.writeField(name, value) }
    }

    /// Ends the head; what is written after this is body.
    mutating func end() { buffer.writeStaticString("\r\n") }

    /// Appends body bytes after `end()`.
    mutating func writeBody(_ text: String) { buffer.writeString(text) }

    mutating func writeBody(_ bytes: inout ByteBuffer) { buffer.writeBuffer(&bytes) }
}

extension ByteBuffer {
    /// `name: value` CRLF, in one copy per piece.
    mutating func writeField(_ name: StaticString, _ value: String) {
        writeField(name, valueBytes: value.utf8.count) { $0.put(value) }
    }

    mutating func writeField(_ name: StaticString, _ value: Int64) {
        writeField(name, valueBytes: ByteWriter.maxDecimal) { $0.putDecimal(value) }
    }

    /// `putValue` writes at most `valueBytes`.
    private mutating func writeField(_ name: StaticString, valueBytes: Int, putValue: (inout ByteWriter) -> Void) {
        writeWithUnsafeMutableBytes(minimumWritableBytes: name.utf8CodeUnitCount + valueBytes + 4) { memory in
            var out = ByteWriter(memory)
            out.put(name)
            out.put(": ")
            putValue(&out)
            out.put("\r\n")
            return out.count
        }
    }
}
