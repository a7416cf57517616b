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
    /// once its size and SHA-256 are the signed index's. The bytes are hashed as they arrive (a
    /// resumed download hashes what it kept first), so there is no second pass over the file.
    public func download(_ index: ChannelIndex, into directory: String) async throws -> String {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let final = directory + "/" + index.bundle
        if let existing = try? RawFile.openForReading(final), (try? existing.size()) == index.size, (try? existing.sha256(length: index.size)) == index.sha256 {
            return final
        }
        Self.removeLeftovers(in: directory, keeping: index.bundle)
        let partial = final + ".partial"
        // How much of the partial file is known to be on the disk: the length at its last sync.
        // Beyond it a power cut can leave anything (ext4 may keep a later size with blocks that were
        // never written, which read as zeros), so a resume starts from there.
        let synced = partial + ".synced"
        let file = try RawFile.openForWriting(partial, create: true)
        let kept = (try? String(contentsOfFile: synced, encoding: .utf8)).flatMap { Int64($0.trimmingCharacters(in: .whitespacesAndNewlines)) } ?? 0
        var have = min(try file.size(), kept)
        if have > index.size { have = 0 }
        try file.truncate(to: have)
        var hasher = SHA256Hasher()
        if have > 0 {
            // What an earlier try kept (a power cut, a dropped connection) is hashed once, here.
            let kept = try RawFile.openForReading(partial)
            hasher = try kept.sha256Hasher(length: have)
            logger.info("resuming the download", metadata: ["url": "\(bundleURL(index))", "have": "\(have)", "of": "\(index.size)"])
        }
        let free = try Self.freeBytes(directory)
        guard index.size - have + reserve <= free else {
            throw UpdateError(
                "mm-data has \(ByteSize.format(free)) free at \(directory); the bundle needs \(ByteSize.format(index.size - have)) more and \(ByteSize.format(reserve)) stay in reserve"
            )
        }
        let url = bundleURL(index)
        var attempts = 0
        // Synced every so often, so what a power cut leaves is there to resume from.
        let syncEvery: Int64 = 32 << 20
        var lastSync = have
        func markSynced() throws {
            try file.sync()
            try AtomicFile.write("\(have)\n", to: synced)
            lastSync = have
        }
        while have < index.size {
            // Every way round the loop counts: a server whose copy is shorter than the index ends each
            // answer early (or answers 416), and that must end in an error, not a loop.
            guard attempts < 5 else {
                throw UpdateError(
                    "GET \(url): \(have) of \(index.size) bytes after \(attempts) attempts (the server's copy may be shorter than the signed index says); what arrived is kept for the next try"
                )
            }
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
                    lastSync = 0
                    hasher = SHA256Hasher()
                case 206 where have > 0:
                    break
                case 416:
                    try file.truncate(to: 0)
                    have = 0
                    lastSync = 0
                    hasher = SHA256Hasher()
                    continue
                default:
                    throw UpdateError("GET \(url): HTTP \(response.status.code)\(response.status.code == 404 ? " (the channel names a bundle the server does not have)" : "")")
                }
                for try await chunk in response.body {
                    guard have + Int64(chunk.readableBytes) <= index.size else {
                        throw UpdateError("GET \(url): the server sent more than the \(index.size) bytes the index says")
                    }
                    try chunk.withUnsafeReadableBytes { bytes in
                        try file.write(bytes, at: have)
                        hasher.update(bytes)
                    }
                    have += Int64(chunk.readableBytes)
                    if have - lastSync >= syncEvery { try markSynced() }
                    progress?(have, index.size)
                }
                if have < index.size {
                    logger.warning("the answer ended early; resuming", metadata: ["url": "\(url)", "have": "\(have)", "of": "\(index.size)"])
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
        try? FileManager.default.removeItem(atPath: synced)
        let digest = hasher.finalizeHex()
        guard digest == index.sha256 else {
            try? FileManager.default.removeItem(atPath: partial)
            throw UpdateError("\(url): SHA-256 is \(digest), the signed index says \(index.sha256); the download was discarded")
        }
        try Syscall.check("rename into place", final) { rename(partial, final) }
        return final
    }

    /// Downloads of other releases (a withdrawn one, one superseded while it was fetched) do not
    /// stay on mm-data.
    static func removeLeftovers(in directory: String, keeping bundle: String) {
        for name in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        where (name.hasSuffix(".mmb") || name.hasSuffix(".mmb.partial") || name.hasSuffix(".mmb.partial.synced"))
            && ![bundle, bundle + ".partial", bundle + ".partial.synced"].contains(name)
        {
            try? FileManager.default.removeItem(atPath: directory + "/" + name)
        }
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
