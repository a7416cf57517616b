import SystemKit

extension Array where Element == UInt8 {
    func le32(_ at: Int) -> UInt32 {
        UInt32(self[at]) | UInt32(self[at + 1]) << 8 | UInt32(self[at + 2]) << 16 | UInt32(self[at + 3]) << 24
    }
    func le64(_ at: Int) -> UInt64 { UInt64(le32(at)) | UInt64(le32(at + 4)) << 32 }
    mutating func putLE32(_ value: UInt32, at: Int) {
        for i in 0..<4 { self[at + i] = UInt8((value >> (8 * UInt32(i))) & 0xff) }
    }
    mutating func putLE64(_ value: UInt64, at: Int) {
        for i in 0..<8 { self[at + i] = UInt8((value >> (8 * UInt64(i))) & 0xff) }
    }
}
