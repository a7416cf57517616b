import Foundation

/// Bytes of a lowercased file name, compared with lowercase ASCII literals.
struct LowercasedName {
    var bytes: UnsafeBufferPointer<UInt8>

    var count: Int { bytes.count }

    func equals(_ other: String) -> Bool { bytes.elementsEqual(other.utf8) }

    func hasSuffix(_ suffix: String) -> Bool {
        let n = suffix.utf8.count
        return n <= bytes.count && bytes[(bytes.count - n)...].elementsEqual(suffix.utf8)
    }

    func hasPrefix(_ prefix: String) -> Bool {
        let n = prefix.utf8.count
        return n <= bytes.count && bytes[..<n].elementsEqual(prefix.utf8)
    }

    func contains(_ part: String) -> Bool {
        var part = part
        return part.withUTF8 { needle in
            guard needle.count <= bytes.count, let first = needle.first else { return needle.isEmpty }
            var index = 0
            while index <= bytes.count - needle.count {
                if bytes[index] == first, bytes[index..<(index + needle.count)].elementsEqual(needle) { return true }
                index += 1
            }
            return false
        }
    }

    func lastIndex(of byte: UInt8) -> Int? { bytes.lastIndex(of: byte) }

    func suffix(from index: Int) -> LowercasedName { LowercasedName(bytes: UnsafeBufferPointer(rebasing: bytes[index...])) }

    func dropLast(_ n: Int) -> LowercasedName { LowercasedName(bytes: UnsafeBufferPointer(rebasing: bytes[..<(bytes.count - n)])) }
}
