import Foundation

/// A message a node sends the watchtower: JSON, dates as seconds since 1970, keys sorted so equal
/// messages are equal bytes.
public protocol TelemetryMessage: Codable {}

extension TelemetryMessage {
    /// The message bytes.
    public func json() throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.dateEncodingStrategy = .secondsSince1970
        return Array(try encoder.encode(self))
    }

    public static func parse(_ bytes: [UInt8]) throws -> Self {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .secondsSince1970
        return try decoder.decode(Self.self, from: Data(bytes))
    }
}
