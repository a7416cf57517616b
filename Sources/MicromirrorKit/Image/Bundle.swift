import Foundation
import SystemKit

/// The update bundle (`.mmb`): a tar holding `manifest.json`, then `manifest.json.sig`, then the
/// payloads in manifest order. The order lets a node check the signature before it reads a single
/// payload byte, and hash each payload while streaming it.
public enum Bundle {
    public static let manifestName = "manifest.json"
    public static let signatureName = "manifest.json.sig"

    /// Writes a bundle at `path`. `payloads` maps each manifest payload name to the file holding it.
    public static func write(
        to path: String,
        manifestBytes: [UInt8],
        signature: [UInt8],
        manifest: Manifest,
        payloadFiles: [String: String],
        progress: ((Int64) -> Void)? = nil
    ) throws {
        let tar = try TarWriter(path: path)
        let mtime = manifest.sourceDateEpoch
        try tar.addFile(name: manifestName, size: Int64(manifestBytes.count), mtime: mtime) { write in
            try manifestBytes.withUnsafeBytes { try write($0) }
        }
        try tar.addFile(name: signatureName, size: Int64(signature.count), mtime: mtime) { write in
            try signature.withUnsafeBytes { try write($0) }
        }
        var done: Int64 = 0
        for payload in manifest.payloads {
            guard let source = payloadFiles[payload.name] else {
                throw VerificationError(check: "payload \(payload.name)", message: "no file given for this payload")
            }
            let file = try RawFile.openForReading(source)
            try tar.addFile(name: payload.name, size: payload.size, mtime: mtime) { write in
                let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 4 << 20, alignment: 4096)
                defer { buffer.deallocate() }
                var offset: Int64 = 0
                while offset < payload.size {
                    let got = try file.read(into: buffer, at: offset)
                    guard got > 0 else { break }
                    try write(UnsafeRawBufferPointer(rebasing: buffer[0..<got]))
                    offset += Int64(got)
                    done += Int64(got)
                    progress?(done)
                }
            }
        }
        try tar.finish()
    }

    /// Reads only the manifest of a bundle, after checking its signature against `keyring`: what a
    /// node decides on (hardware, build number) before a single payload byte is read.
    public static func signedManifest(path: String, keyring: Keyring) throws -> Manifest {
        let tar = try TarReader(path: path)
        return try readSignedManifest(tar, path: path, keyring: keyring)
    }

    private static func readSignedManifest(_ tar: TarReader, path: String, keyring: Keyring) throws -> Manifest {
        guard let first = try tar.next(), first.name == manifestName else {
            throw VerificationError(check: "bundle", message: "\(path): the first entry must be \(manifestName)")
        }
        let manifestBytes = try tar.readAll(limit: 1 << 20)
        guard let second = try tar.next(), second.name == signatureName else {
            throw VerificationError(check: "bundle", message: "\(path): the second entry must be \(signatureName)")
        }
        let signature = try tar.readAll(limit: 4096)
        try keyring.verify(signature: signature, message: manifestBytes, what: "\(path): \(manifestName)")
        return try Manifest.parse(manifestBytes, source: "\(path): \(manifestName)")
    }

    /// Reads and checks a bundle: signature first (against `keyring`), then every payload's size
    /// and SHA-256 while streaming it to `sink` (which may write it somewhere, or ignore it).
    /// Throws a `VerificationError` naming the first check that failed.
    @discardableResult
    public static func verify(
        path: String,
        keyring: Keyring,
        sink: (String, UnsafeRawBufferPointer) throws -> Void = { _, _ in }
    ) throws -> Manifest {
        let tar = try TarReader(path: path)
        let manifest = try readSignedManifest(tar, path: path, keyring: keyring)

        var expected = manifest.payloads[...]
        while let entry = try tar.next() {
            guard let payload = expected.first, payload.name == entry.name else {
                let wanted = expected.first?.name ?? "the end of the bundle"
                throw VerificationError(check: "payload \(entry.name)", message: "unexpected entry in \(path); expected \(wanted)")
            }
            expected = expected.dropFirst()
            guard entry.size == payload.size else {
                throw VerificationError(
                    check: "payload \(payload.name)",
                    message: "size is \(entry.size) bytes, the manifest says \(payload.size)"
                )
            }
            let hasher = SHA256Hasher()
            try tar.readData { chunk in
                hasher.update(chunk)
                try sink(payload.name, chunk)
            }
            let digest = hasher.finalizeHex()
            guard digest == payload.sha256 else {
                throw VerificationError(
                    check: "payload \(payload.name)",
                    message: "SHA-256 is \(digest), the manifest says \(payload.sha256)"
                )
            }
        }
        if let missing = expected.first {
            throw VerificationError(check: "payload \(missing.name)", message: "missing from \(path)")
        }
        return manifest
    }
}
