import Foundation
import SystemKit

/// Checks a raw disk image against its signed manifest: signature, GPT layout, each partition's
/// content hash, then the whole-disk hash. The first check that fails is thrown, by name.
public struct ImageVerifier {
    public var keyring: Keyring

    public init(keyring: Keyring) { self.keyring = keyring }

    /// A completed check, for reporting.
    public struct Check: Sendable {
        public var name: String
        public var detail: String
    }

    /// Verifies `imagePath` with `manifestPath` and its `.sig`. Returns the checks that passed.
    public func verify(
        imagePath: String,
        manifestPath: String,
        progress: ((String, Int64, Int64) -> Void)? = nil
    ) throws -> (Manifest, [Check]) {
        var (manifest, checks) = try signedManifest(manifestPath)
        let image = try RawFile.openForReading(imagePath)
        checks += try checkLayout(image, path: imagePath, manifest: manifest)
        for expected in manifest.partitions {
            guard let want = expected.sha256 else { continue }
            let check = "partition \(expected.label)"
            let got = try image.sha256(offset: expected.offset, length: expected.contentSize) {
                progress?(check, $0, expected.contentSize)
            }
            guard got == want else {
                throw VerificationError(check: check, message: "content SHA-256 is \(got), the manifest says \(want)")
            }
            checks.append(Check(name: check, detail: "\(expected.contentSize) bytes, sha256 \(want.prefix(16))…"))
        }
        let size = manifest.disk.size
        let whole = try image.sha256(length: size) { progress?("disk", $0, size) }
        guard whole == manifest.disk.sha256 else {
            throw VerificationError(check: "disk", message: "SHA-256 of \(imagePath) is \(whole), the manifest says \(manifest.disk.sha256)")
        }
        checks.append(Check(name: "disk", detail: "\(size) bytes, sha256 \(whole.prefix(16))…"))
        return (manifest, checks)
    }

    /// What a flash needs before it writes: the signature, the layout, and a block map it can
    /// trust. When the manifest signs the block map (releases since it does), the map's bytes are
    /// checked against it and the image's content is left to the writer, which hashes every mapped
    /// range as it reads it; holes are zeros by definition. An older manifest gets the full
    /// `verify` first. Returns the manifest, the parsed map, and the checks that passed.
    public func verifyForFlash(
        imagePath: String,
        manifestPath: String,
        blockMapPath: String,
        progress: ((String, Int64, Int64) -> Void)? = nil
    ) throws -> (Manifest, BlockMap.Parsed, [Check]) {
        var (manifest, checks) = try signedManifest(manifestPath)
        guard let mapBytes = FileManager.default.contents(atPath: blockMapPath) else {
            throw VerificationError(check: "block map", message: "cannot read \(blockMapPath)")
        }
        if let expected = manifest.blockMap {
            let got = SHA256Hasher.hex(of: Array(mapBytes))
            guard Int64(mapBytes.count) == expected.size, got == expected.sha256 else {
                throw VerificationError(
                    check: "block map",
                    message: "\(blockMapPath) is \(mapBytes.count) bytes with SHA-256 \(got), the signed manifest says \(expected.size) bytes, \(expected.sha256): not this release's block map"
                )
            }
            checks += try checkLayout(try RawFile.openForReading(imagePath), path: imagePath, manifest: manifest)
            checks.append(Check(name: "block map", detail: "sha256 \(got.prefix(16))… as signed; each range is checked as it is written"))
        } else {
            (manifest, checks) = try verify(imagePath: imagePath, manifestPath: manifestPath, progress: progress)
        }
        let map: BlockMap.Parsed
        do { map = try BlockMap.parse(String(decoding: mapBytes, as: UTF8.self), file: blockMapPath) } catch {
            throw VerificationError(check: "block map", message: "\(error)")
        }
        guard map.imageSize == manifest.disk.size else {
            throw VerificationError(check: "block map", message: "\(blockMapPath) maps \(map.imageSize) bytes, the image is \(manifest.disk.size)")
        }
        return (manifest, map, checks)
    }

    /// The manifest, once its detached signature is checked against the keyring.
    func signedManifest(_ manifestPath: String) throws -> (Manifest, [Check]) {
        guard let manifestData = FileManager.default.contents(atPath: manifestPath) else {
            throw VerificationError(check: "manifest", message: "cannot read \(manifestPath)")
        }
        let signaturePath = manifestPath + ".sig"
        guard let signature = FileManager.default.contents(atPath: signaturePath) else {
            throw VerificationError(check: "signature", message: "cannot read \(signaturePath)")
        }
        let signer = try keyring.verify(signature: Array(signature), message: Array(manifestData), what: manifestPath)
        return (try Manifest.parse(Array(manifestData), source: manifestPath), [Check(name: "signature", detail: "signed by \(signer)")])
    }

    /// The image's size and partition table against the manifest (no content hashed).
    func checkLayout(_ image: RawFile, path imagePath: String, manifest: Manifest) throws -> [Check] {
        let size = try image.size()
        guard size == manifest.disk.size else {
            throw VerificationError(check: "disk", message: "\(imagePath) is \(size) bytes, the manifest says \(manifest.disk.size)")
        }
        let gpt: GPT
        do { gpt = try GPT.read(from: image) } catch {
            throw VerificationError(check: "partition table", message: "\(error)")
        }
        guard gpt.diskGUID == manifest.diskGUID else {
            throw VerificationError(check: "partition table", message: "disk GUID is \(gpt.diskGUID), the manifest says \(manifest.diskGUID)")
        }
        for expected in manifest.partitions {
            let check = "partition \(expected.label)"
            guard let found = gpt.partition(named: expected.label) else {
                throw VerificationError(check: check, message: "not in the partition table of \(imagePath)")
            }
            guard found.offsetInBytes == expected.offset, found.sizeInBytes == expected.size else {
                throw VerificationError(
                    check: check,
                    message: "at \(found.offsetInBytes)+\(found.sizeInBytes), the manifest says \(expected.offset)+\(expected.size)"
                )
            }
            guard found.typeGUID == expected.typeGUID, found.uniqueGUID == expected.uuid else {
                throw VerificationError(check: check, message: "type or unique GUID differs from the manifest")
            }
        }
        return [Check(name: "partition table", detail: "\(manifest.partitions.count) partitions as signed")]
    }
}
