/// Appends bytes to raw memory the caller sized beforehand: the hot paths (response heads, access
/// log lines) write each piece with one copy and no per-piece capacity or uniqueness checks.
struct ByteWriter {
    private let memory: UnsafeMutableRawBufferPointer
    /// Bytes written so far.
    private(set) var count = 0

    init(_ memory: UnsafeMutableRawBufferPointer) { self.memory = memory }

    mutating func put(_ byte: UInt8) {
        precondition(count < memory.count, "ByteWriter: capacity \(memory.count) exceeded")
        memory[count] = byte
        count += 1
    }

    mutating func put(_ text: StaticString) {
        put(UnsafeRawBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
    }

    mutating func put(_ text: String) {
        var text = text
        text.withUTF8 { put(UnsafeRawBufferPointer($0)) }
    }

    mutating func put(_ bytes: UnsafeRawBufferPointer) {
        precondition(bytes.count <= memory.count - count, "ByteWriter: capacity \(memory.count) exceeded")
        if let source = bytes.baseAddress, bytes.count > 0 {
            (memory.baseAddress! + count).copyMemory(from: source, byteCount: bytes.count)
            count += bytes.count
        }
    }

    /// A non-negative decimal number.
    mutating func putDecimal(_ value: Int64) {
        var n = UInt64(max(0, value))
        var digits = 1
        var scale: UInt64 = 10
        while digits < 20, n >= scale {
            digits += 1
            scale = scale &* 10
        }
        precondition(digits <= memory.count - count, "ByteWriter: capacity \(memory.count) exceeded")
        var index = count + digits
        repeat {
            index -= 1
            memory[index] = UInt8(ascii: "0") + UInt8(n % 10)
            n /= 10
        } while n > 0
        count += digits
    }

    /// The most bytes `putDecimal` writes.
    static let maxDecimal = 20
}
