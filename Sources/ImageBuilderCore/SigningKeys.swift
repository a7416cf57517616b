import Foundation
import MicromirrorKit
import SystemKit

/// Creates and loads the Ed25519 signing keys (`NAME.key` 0600 + `NAME.pub`).
public enum SigningKeys {
    /// Writes a new key pair at `base.key` and `base.pub`; refuses to overwrite an existing key.
    @discardableResult
    public static func generate(base: String) throws -> Ed25519PublicKey {
        let keyPath = base + ".key"
        let pubPath = base + ".pub"
        guard !FileManager.default.fileExists(atPath: keyPath) else {
            throw BuildError(stage: "keygen", "\(keyPath) already exists; remove it first or choose another name")
        }
        let directory = (base as NSString).deletingLastPathComponent
        if !directory.isEmpty {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        }
        let key = try Ed25519PrivateKey.generate()
        let publicKey = try key.publicKey()
        try AtomicFile.write(try key.pem(), to: keyPath, mode: 0o600)
        try AtomicFile.write(try publicKey.pem(), to: pubPath, mode: 0o644)
        return publicKey
    }

    /// Loads a private key, naming the file in every error.
    public static func loadPrivate(_ path: String) throws -> Ed25519PrivateKey {
        guard let data = FileManager.default.contents(atPath: path) else {
            let reason = FileManager.default.fileExists(atPath: path) ? "cannot be read" : "does not exist"
            throw BuildError(stage: "key", "signing key \(path) \(reason); create one with: mm-image keygen --out \((path as NSString).deletingPathExtension)")
        }
        return try Ed25519PrivateKey(pem: Array(data), source: path)
    }
}
