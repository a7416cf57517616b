import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1

/// The alert hook as a webhook: each fleet event POSTed as JSON to a URL (a chat bot, an incident
/// tool), `{"event", "node", "subject", "detail", "time"}`. One attempt with a timeout; a failure is
/// the caller's to report, the next event goes out regardless.
public struct FleetWebhook: Sendable {
    public let url: String
    public var timeout: TimeAmount = .seconds(10)

    /// Whether `hook` names a webhook (an http:// or https:// URL) rather than a program.
    public static func isWebhook(_ hook: String) -> Bool { hook.hasPrefix("http://") || hook.hasPrefix("https://") }

    public init(url: String) { self.url = url }

    /// The JSON body for `event`.
    public static func body(_ event: FleetEvent, time: Date) throws -> [UInt8] {
        struct Body: Encodable { var event, node, subject, detail: String; var time: Date }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.dateEncodingStrategy = .iso8601
        return Array(try encoder.encode(Body(event: event.kind.rawValue, node: event.node, subject: event.subject ?? "", detail: event.detail, time: time)))
    }

    /// POSTs `event`; throws when the receiver cannot be reached or answers other than 2xx.
    public func post(_ event: FleetEvent, time: Date = Date()) async throws {
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.headers.add(name: "User-Agent", value: "micromirror-fleet")
        request.body = .bytes(ByteBuffer(bytes: try Self.body(event, time: time)))
        let response = try await HTTPClient.shared.execute(request, timeout: timeout)
        guard (200..<300).contains(Int(response.status.code)) else {
            throw BuildError(stage: "fleet", "the webhook \(url) answered \(response.status.code) for \(event.node) \(event.kind.rawValue)")
        }
    }
}
