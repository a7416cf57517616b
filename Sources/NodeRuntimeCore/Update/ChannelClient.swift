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
    /// once it is the signed index's (size and SHA-256) and checks as a bundle of the running image's
    /// `keyring` (signature, then every payload's size and SHA-256). Both are checked as the bytes
    /// arrive (a resumed download reads what it kept first), so there is no second pass over the
    /// file, and a tampered bundle is stopped where it fails: after a few kilobytes for a bad
    /// manifest or signature, at the end of a bad payload, at once when the server's copy is not
    /// the size the index says.
    public func download(_ index: ChannelIndex, into directory: String, keyring: Keyring) async throws -> String {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let url = bundleURL(index)
        let final = directory + "/" + index.bundle
        if let existing = try? RawFile.openForReading(final), (try? existing.size()) == index.size {
            do {
                var check = Check(index: index, keyring: keyring, source: final)
                try check.read(existing, length: index.size)
                try check.finish()
                return final
            } catch {
                logger.warning("a finished download does not check any more; fetching it again", metadata: ["file": "\(final)", "error": "\(error)"])
                try? FileManager.default.removeItem(atPath: final)
            }
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
        var check = Check(index: index, keyring: keyring, source: url)
        // A bundle that fails a check is not resumed: it is removed, and the error says how far it got.
        func discard(_ error: any Error) -> UpdateError {
            try? FileManager.default.removeItem(atPath: partial)
            try? FileManager.default.removeItem(atPath: synced)
            return UpdateError("\(error) (at byte \(have) of \(index.size)); the download was discarded")
        }
        if have > 0 {
            // What an earlier try kept (a power cut, a dropped connection) is checked once, here.
            do { try check.read(try RawFile.openForReading(partial), length: have) } catch { throw discard(error) }
            logger.info("resuming the download", metadata: ["url": "\(url)", "have": "\(have)", "of": "\(index.size)"])
        }
        let free = try DiskSpace.available(at: directory)
        guard index.size - have + reserve <= free else {
            throw UpdateError(
                "mm-data has \(ByteSize.format(free)) free at \(directory); the bundle needs \(ByteSize.format(index.size - have)) more and \(ByteSize.format(reserve)) stay in reserve"
            )
        }
        var attempts = 0
        // Synced every so often, so what a power cut leaves is there to resume from.
        let syncEvery: Int64 = 32 << 20
        var lastSync = have
        func markSynced() throws {
            try file.sync()
            try AtomicFile.write("\(have)\n", to: synced)
            lastSync = have
        }
        func startOver() throws {
            try file.truncate(to: 0)
            have = 0
            lastSync = 0
            check = Check(index: index, keyring: keyring, source: url)
        }
        while have < index.size {
            // Every way round the loop counts: a server that ends each answer early (or answers 416)
            // must end in an error, not a loop.
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
                if let total = Self.totalSize(response), total != index.size {
                    // The whole file's size is in the answer's head: a truncated or different copy is
                    // refused before its body is read.
                    throw UpdateError(
                        "GET \(url): the server's copy is \(total) bytes, the signed index says \(index.size) (a truncated or different file); not downloaded"
                    )
                }
                switch response.status.code {
                case 200:
                    // The server ignored the range: start over.
                    try startOver()
                case 206 where have > 0:
                    break
                case 416:
                    try startOver()
                    continue
                default:
                    throw UpdateError("GET \(url): HTTP \(response.status.code)\(response.status.code == 404 ? " (the channel names a bundle the server does not have)" : "")")
                }
                for try await chunk in response.body {
                    guard have + Int64(chunk.readableBytes) <= index.size else {
                        throw UpdateError("GET \(url): the server sent more than the \(index.size) bytes the index says")
                    }
                    do {
                        try chunk.withUnsafeReadableBytes { bytes in
                            try file.write(bytes, at: have)
                            try check.feed(bytes)
                        }
                    } catch let error as VerificationError {
                        throw discard(error)
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
        do { try check.finish() } catch { throw discard(error) }
        try Syscall.check("rename into place", final) { rename(partial, final) }
        return final
    }

    /// The whole file's size as an answer's head gives it: `Content-Length` of a 200, the total in
    /// `Content-Range` of a 206 or 416. Nil when the head does not say.
    static func totalSize(_ response: HTTPClientResponse) -> Int64? {
        switch response.status.code {
        case 200:
            return response.headers.first(name: "Content-Length").flatMap { Int64($0) }
        case 206, 416:
            guard let range = response.headers.first(name: "Content-Range"), let slash = range.lastIndex(of: "/") else { return nil }
            return Int64(range[range.index(after: slash)...])
        default:
            return nil
        }
    }

    /// What a download is checked against as it arrives: the signed index (the whole file's SHA-256,
    /// its manifest's build and hardware) and the bundle's own checks (`BundleStream`).
    struct Check {
        let index: ChannelIndex
        let stream: BundleStream
        let hasher = SHA256Hasher()
        let source: String
        private var manifestChecked = false

        init(index: ChannelIndex, keyring: Keyring, source: String) {
            self.index = index
            self.source = source
            stream = BundleStream(keyring: keyring, source: source)
        }

        mutating func feed(_ bytes: UnsafeRawBufferPointer) throws(VerificationError) {
            hasher.update(bytes)
            try stream.feed(bytes)
            if !manifestChecked, let manifest = stream.manifest {
                manifestChecked = true
                guard manifest.buildNumber == index.buildNumber, manifest.hardware == index.hardware else {
                    throw VerificationError(
                        check: "bundle",
                        message: "\(source) is build \(manifest.buildNumber) for \(manifest.hardware); the signed channel index says build \(index.buildNumber) for \(index.hardware)"
                    )
                }
            }
        }

        /// Feeds the first `length` bytes of `file`.
        mutating func read(_ file: RawFile, length: Int64) throws {
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 4 << 20, alignment: 4096)
            defer { buffer.deallocate() }
            var offset: Int64 = 0
            while offset < length {
                let got = try file.read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<Int(min(Int64(buffer.count), length - offset))]), at: offset)
                guard got > 0 else { throw UpdateError("\(source): ends after \(offset) of \(length) bytes") }
                try feed(UnsafeRawBufferPointer(rebasing: buffer[0..<got]))
                offset += Int64(got)
            }
        }

        func finish() throws {
            try stream.finish()
            let digest = hasher.finalizeHex()
            guard digest == index.sha256 else {
                throw VerificationError(check: "bundle", message: "\(source): SHA-256 is \(digest), the signed index says \(index.sha256)")
            }
        }
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
}
