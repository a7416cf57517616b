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
        guard let manifestData = FileManager.default.contents(atPath: manifestPath) else {
            throw VerificationError(check: "manifest", message: "cannot read \(manifestPath)")
        }
        let signaturePath = manifestPath + ".sig"
        guard let signature = FileManager.default.contents(atPath: signaturePath) else {
            throw VerificationError(check: "signature", message: "cannot read \(signaturePath)")
        }
        var checks: [Check] = []
        let signer = try keyring.verify(signature: Array(signature), message: Array(manifestData), what: manifestPath)
        checks.append(Check(name: "signature", detail: "signed by \(signer)"))
        let manifest = try Manifest.parse(Array(manifestData), source: manifestPath)

        let image = try RawFile.openForReading(imagePath)
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
            if let want = expected.sha256 {
                let got = try image.sha256(offset: expected.offset, length: expected.contentSize) {
                    progress?(check, $0, expected.contentSize)
                }
                guard got == want else {
                    throw VerificationError(check: check, message: "content SHA-256 is \(got), the manifest says \(want)")
                }
                checks.append(Check(name: check, detail: "\(expected.contentSize) bytes, sha256 \(want.prefix(16))…"))
            }
        }
        let whole = try image.sha256(length: size) { progress?("disk", $0, size) }
        guard whole == manifest.disk.sha256 else {
            throw VerificationError(check: "disk", message: "SHA-256 of \(imagePath) is \(whole), the manifest says \(manifest.disk.sha256)")
        }
        checks.append(Check(name: "disk", detail: "\(size) bytes, sha256 \(whole.prefix(16))…"))
        return (manifest, checks)
    }
}
