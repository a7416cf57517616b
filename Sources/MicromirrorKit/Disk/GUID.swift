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
