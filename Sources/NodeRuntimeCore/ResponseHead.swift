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
    mutating func add(_ name: StaticString, _ value: String) {
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: name.utf8CodeUnitCount + value.utf8.count + 4) { memory in
            var out = ByteWriter(memory)
            out.put(name)
            out.put(": ")
            out.put(value)
            out.put("\r\n")
            return out.count
        }
    }

    mutating func add(_ name: StaticString, _ value: Int64) {
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: name.utf8CodeUnitCount + ByteWriter.maxDecimal + 4) { memory in
            var out = ByteWriter(memory)
            out.put(name)
            out.put(": ")
            out.putDecimal(value)
            out.put("\r\n")
            return out.count
        }
    }

    /// Ends the head; what is written after this is body.
    mutating func end() { buffer.writeStaticString("\r\n") }

    /// Appends body bytes after `end()`.
    mutating func writeBody(_ text: String) { buffer.writeString(text) }

    /// Reads `count` bytes of `descriptor` at `offset` into the body; false if the file was shorter.
    mutating func readBody(from descriptor: Int32, offset: Int64, count: Int) -> Bool {
        let got = buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: count) { pointer in
            max(0, pread(descriptor, pointer.baseAddress, count, off_t(offset)))
        }
        return got == count
    }
}
