import Foundation
import MicromirrorKit
import SystemKit

/// Writes a bundle's root filesystem into the inactive slot's partition and its kernel and initrd
/// into a staging directory, hashing while writing, then reads the slot back from the device
/// itself (bypassing the page cache) and compares it with the signed manifest.
///
/// The caller has already checked the bundle's SHA-256 against the signed channel index and its
/// manifest (signature, hardware, build number) with `Bundle.signedManifest`; nothing here decides
/// whether to install, only how to do it so that what is on the disk is exactly what was signed.
public struct SlotWriter {
    public var device: String
    public var staging: String
    /// Large aligned writes: the slot is written once, sequentially.
    public var chunkSize = 4 << 20
    public var progress: (@Sendable (_ stage: String, _ done: Int64, _ total: Int64) -> Void)?

    public init(device: String, staging: String) {
        self.device = device
        self.staging = staging
    }

    public static let rootPayload = "root.erofs"
    public static let kernelPayload = "vmlinuz"
    public static let initrdPayload = "initrd.img"

    /// What a written slot needs next: the files to put on the ESP, and the manifest they came with.
    public struct Written: Sendable {
        public var manifest: Manifest
        public var kernel: String
        public var initrd: String
        public var rootBytes: Int64
    }

    public func write(bundle: String, keyring: Keyring) throws -> Written {
        let signed = try Bundle.signedManifest(path: bundle, keyring: keyring)
        guard let root = signed.payloads.first(where: { $0.name == Self.rootPayload }) else {
            throw UpdateError("\(bundle): the manifest has no \(Self.rootPayload) payload")
        }
        let target = try RawFile.openDirect(device, writing: true)
        let capacity = try RawFile.openForReading(device).size()
        guard root.size <= capacity else {
            throw UpdateError("\(bundle): \(Self.rootPayload) is \(ByteSize.format(root.size)), the slot \(device) holds \(ByteSize.format(capacity))")
        }
        try FileManager.default.createDirectory(atPath: staging, withIntermediateDirectories: true)
        let kernel = staging + "/" + Self.kernelPayload
        let initrd = staging + "/" + Self.initrdPayload
        let kernelFile = try RawFile.openForWriting(kernel, create: true, truncate: true)
        let initrdFile = try RawFile.openForWriting(initrd, create: true, truncate: true)

        // The slot is written on a thread of its own while the bundle is read and hashed here.
        let writer = OverlappedWriter(file: target, blockSize: chunkSize)
        var buffer = try writer.buffer()
        var filled = 0
        var written: Int64 = 0
        var offsets: [String: Int64] = [:]
        func flush(padTo block: Int, last: Bool = false) throws {
            guard filled > 0 else { return }
            let length = (filled + block - 1) / block * block
            if length > filled { UnsafeMutableRawBufferPointer(rebasing: buffer[filled..<length]).initializeMemory(as: UInt8.self, repeating: 0) }
            writer.write(length: length, at: written)
            written += Int64(filled)
            filled = 0
            progress?("write slot", written, root.size)
            if !last { buffer = try writer.buffer() }
        }
        let manifest = try Bundle.verify(path: bundle, keyring: keyring) { name, chunk in
            switch name {
            case Self.rootPayload:
                var rest = chunk
                while !rest.isEmpty {
                    let take = min(rest.count, chunkSize - filled)
                    UnsafeMutableRawBufferPointer(rebasing: buffer[filled..<(filled + take)]).copyMemory(from: UnsafeRawBufferPointer(rebasing: rest[0..<take]))
                    filled += take
                    rest = UnsafeRawBufferPointer(rebasing: rest[take...])
                    if filled == chunkSize { try flush(padTo: 4096) }
                }
            case Self.kernelPayload, Self.initrdPayload:
                let file = name == Self.kernelPayload ? kernelFile : initrdFile
                try file.write(chunk, at: offsets[name, default: 0])
                offsets[name, default: 0] += Int64(chunk.count)
            default:
                break  // a payload this node does not install (a newer bundle may carry more)
            }
        }
        // The last chunk is padded to the block size: the bytes past the payload are unused slot space.
        try flush(padTo: 4096, last: true)
        try writer.finish()
        try target.sync()
        try kernelFile.sync()
        try initrdFile.sync()
        guard manifest == signed else { throw UpdateError("\(bundle): the manifest changed while the bundle was read") }
        try verifyOnDevice(root)
        return Written(manifest: manifest, kernel: kernel, initrd: initrd, rootBytes: root.size)
    }

    /// Reads the payload's bytes back from the device with O_DIRECT (what the disk holds, not what
    /// the page cache remembers) and compares their SHA-256 with the manifest's.
    public func verifyOnDevice(_ payload: Manifest.File) throws {
        let source = try RawFile.openDirect(device, writing: false)
        let hasher = SHA256Hasher()
        // Block k+1 is read from the device while block k is hashed.
        try ReadAhead(file: source, length: payload.size, blockSize: chunkSize).forEach { block, offset in
            hasher.update(block)
            progress?("read back", offset + Int64(block.count), payload.size)
        }
        let digest = hasher.finalizeHex()
        guard digest == payload.sha256 else {
            throw UpdateError("read back from \(device): SHA-256 \(digest), the manifest says \(payload.sha256); the slot is not usable (a failing disk?)")
        }
    }
}
