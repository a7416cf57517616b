import AsyncHTTPClient
import Foundation
import MicromirrorKit
import NIOCore
import NIOHTTP1

extension MirrorManagerCheckin {
    /// Checks in; returns what the server said (`checked in successful`), or throws saying why not.
    public func send(timeout: TimeAmount = .seconds(120)) async throws -> String {
        var request = HTTPClientRequest(url: server)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "text/xml")
        request.headers.add(name: "User-Agent", value: "micromirror mm-node report-mirror")
        request.body = .bytes(ByteBuffer(string: Self.requestBody(try payload())))
        let response = try await HTTPClient.shared.execute(request, timeout: timeout)
        let body = String(buffer: try await response.body.collect(upTo: 1 << 20))
        guard response.status == .ok else { throw SyncError("MirrorManager at \(server) answered \(response.status.code): \(body.prefix(200))") }
        if body.contains("<fault>") {
            let message = Self.firstString(in: body, after: "faultString") ?? body
            throw SyncError("MirrorManager at \(server) refused the check-in: \(message)")
        }
        return Self.firstString(in: body) ?? body
    }
}
