import AsyncHTTPClient
import Foundation
import NIOHTTP1
import Logging
import MicromirrorKit
import NIOCore
import SystemKit

/// Fetches a channel's signed index and downloads the bundle it names onto mm-data, resuming a cut
/// download with an HTTP Range request; never into RAM.
public struct ChannelClient: Sendable {
    /// The index's URL, `http(s)://…/CHANNEL.json`; its signature is next to it (`.sig`).
    public var indexURL: String
    public var client: HTTPClient
    public var logger: Logger
    /// Bytes kept free on mm-data besides the download (state, logs, the mirror's own work).
    public var reserve: Int64 = 256 << 20
    public var progress: (@Sendable (_ done: Int64, _ total: Int64) -> Void)?

    public init(indexURL: String, client: HTTPClient = .shared, logger: Logger) {
        self.indexURL = indexURL
        self.client = client
        self.logger = logger
    }

    /// The index, checked against `keyring` (the running image's).
    public func index(keyring: Keyring) async throws -> ChannelIndex {
        let bytes = try await fetch(indexURL, limit: 1 << 20)
        let signature = try await fetch(indexURL + ".sig", limit: 4096)
        return try ChannelIndex.verified(bytes, signature: signature, keyring: keyring, source: indexURL)
    }

    /// Where `index`'s bundle is, next to the index.
    public func bundleURL(_ index: ChannelIndex) -> String {
        guard let slash = indexURL.lastIndex(of: "/") else { return index.bundle }
        return String(indexURL[...slash]) + index.bundle
    }

    /// Downloads the bundle to `directory/BUNDLE` (resuming `BUNDLE.partial`), and returns its path
    /// once its size and SHA-256 are the signed index's.
    public func download(_ index: ChannelIndex, into directory: String) async throws -> String {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let final = directory + "/" + index.bundle
        if let existing = try? RawFile.openForReading(final), (try? existing.size()) == index.size, (try? existing.sha256(length: index.size)) == index.sha256 {
            return final
        }
        let partial = final + ".partial"
        let file = try RawFile.openForWriting(partial, create: true)
        var have = try file.size()
        if have > index.size { try file.truncate(to: 0); have = 0 }
        let free = try Self.freeBytes(directory)
        guard index.size - have + reserve <= free else {
            throw UpdateError(
                "mm-data has \(ByteSize.format(free)) free at \(directory); the bundle needs \(ByteSize.format(index.size - have)) more and \(ByteSize.format(reserve)) stay in reserve"
            )
        }
        let url = bundleURL(index)
        var attempts = 0
        while have < index.size {
            attempts += 1
            var request = HTTPClientRequest(url: url)
            if have > 0 { request.headers.add(name: "Range", value: "bytes=\(have)-") }
            do {
                let response = try await client.execute(request, timeout: .seconds(60))
                switch response.status.code {
                case 200:
                    // The server ignored the range: start over.
                    try file.truncate(to: 0)
                    have = 0
                case 206 where have > 0:
                    break
                case 416:
                    try file.truncate(to: 0)
                    have = 0
                    continue
                default:
                    throw UpdateError("GET \(url): HTTP \(response.status.code)\(response.status.code == 404 ? " (the channel names a bundle the server does not have)" : "")")
                }
                for try await chunk in response.body {
                    guard have + Int64(chunk.readableBytes) <= index.size else {
                        throw UpdateError("GET \(url): the server sent more than the \(index.size) bytes the index says")
                    }
                    try chunk.withUnsafeReadableBytes { try file.write($0, at: have) }
                    have += Int64(chunk.readableBytes)
                    progress?(have, index.size)
                }
            } catch let error as UpdateError {
                throw error
            } catch {
                // A dropped connection: resume from what arrived, a few times.
                guard attempts < 5 else { throw UpdateError("GET \(url): \(error) (after \(attempts) attempts; \(have) of \(index.size) bytes kept for the next try)") }
                logger.warning("download interrupted; resuming", metadata: ["url": "\(url)", "have": "\(have)", "error": "\(error)"])
                try await Task.sleep(for: .seconds(Int64(attempts)))
            }
        }
        try file.sync()
        let digest = try file.sha256(length: index.size)
        guard digest == index.sha256 else {
            try? FileManager.default.removeItem(atPath: partial)
            throw UpdateError("\(url): SHA-256 is \(digest), the signed index says \(index.sha256); the download was discarded")
        }
        try Syscall.check("rename into place", final) { rename(partial, final) }
        return final
    }

    func fetch(_ url: String, limit: Int) async throws -> [UInt8] {
        let response = try await client.execute(HTTPClientRequest(url: url), timeout: .seconds(30))
        guard response.status.code == 200 else { throw UpdateError("GET \(url): HTTP \(response.status.code)") }
        var body = try await response.body.collect(upTo: limit)
        return body.readBytes(length: body.readableBytes) ?? []
    }

    static func freeBytes(_ path: String) throws -> Int64 {
        var info = statvfs()
        try Syscall.check("statvfs", path) { statvfs(path, &info) }
        return Int64(info.f_bavail) * Int64(info.f_frsize)
    }
}
