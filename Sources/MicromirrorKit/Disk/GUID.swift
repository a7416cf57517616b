import SystemKit

/// A 128-bit GUID in RFC 4122 byte order (as written in text), with GPT's mixed-endian on-disk form.
public struct GUID: Hashable, Sendable, CustomStringConvertible, Codable {
    /// The 16 bytes in textual order.
    public let bytes: [UInt8]

    /// From 16 bytes in textual order.
    public init(bytes: [UInt8]) {
        precondition(bytes.count == 16, "a GUID has 16 bytes")
        self.bytes = bytes
    }

    /// Parses `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` (either case).
    public init?(_ text: String) {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 5, parts.map(\.count) == [8, 4, 4, 4, 12],
            let raw = Hex.decode(parts.joined())
        else { return nil }
        self.bytes = raw
    }

    /// Decodes GPT's on-disk form: the first three fields little-endian.
    public init(mixedEndian raw: some Collection<UInt8>) {
        let b = Array(raw)
        precondition(b.count == 16)
        self.bytes = [b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6]] + b[8..<16]
    }

    /// GPT's on-disk form.
    public var mixedEndian: [UInt8] {
        let b = bytes
        return [b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6]] + b[8..<16]
    }

    public static let zero = GUID(bytes: [UInt8](repeating: 0, count: 16))

    /// Lowercase canonical text.
    public var description: String {
        let hex = Hex.encode(bytes)
        let c = Array(hex)
        return String(c[0..<8]) + "-" + String(c[8..<12]) + "-" + String(c[12..<16]) + "-" + String(c[16..<20]) + "-"
            + String(c[20..<32])
    }

    /// A version-4-shaped GUID derived from `seed` and `purpose` (SHA-256, like systemd-repart's
    /// seeded UUIDs): the same inputs always give the same GUID, different purposes never collide.
    public static func derived(seed: String, purpose: String) -> GUID {
        let digest = Hex.decode(SHA256Hasher.hex(of: Array("micromirror-guid\u{0}\(seed)\u{0}\(purpose)".utf8)))!
        var b = Array(digest.prefix(16))
        b[6] = (b[6] & 0x0f) | 0x40
        b[8] = (b[8] & 0x3f) | 0x80
        return GUID(bytes: b)
    }

    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let guid = GUID(text) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "not a GUID: \(text)"))
        }
        self = guid
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}

/// GPT partition type GUIDs from the UAPI Discoverable Partitions Specification.
public enum PartitionType {
    public static let esp = GUID("c12a7328-f81f-11d2-ba4b-00a0c93ec93b")!
    public static let rootX86_64 = GUID("4f68bce3-e8cd-4db1-96e7-fbcaf984b709")!
    public static let linuxGeneric = GUID("0fc63daf-8483-4772-8e79-3d69d8477de4")!
    public static let srv = GUID("3b8f8425-20e0-4f3b-907f-1a25a76f98e8")!

    /// A short name for a known type, for `inspect`.
    public static func name(of guid: GUID) -> String {
        switch guid {
        case esp: return "esp"
        case rootX86_64: return "root-x86-64"
        case linuxGeneric: return "linux-generic"
        case srv: return "srv"
        default: return "unknown"
        }
    }
}
