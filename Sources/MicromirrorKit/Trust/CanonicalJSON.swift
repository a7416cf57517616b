import Foundation

/// The bytes that are signed: JSON with sorted keys, fixed indentation, unescaped slashes and a
/// trailing newline, so equal values are equal files (manifests, channel indexes).
public enum CanonicalJSON {
    public static func bytes<Value: Encodable>(_ value: Value) throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        return Array(try encoder.encode(value)) + [UInt8(ascii: "\n")]
    }
}
