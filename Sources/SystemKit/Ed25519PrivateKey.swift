internal import COpenSSL
import Foundation

/// An Ed25519 private key held by OpenSSL. PEM (PKCS#8) on disk, so `openssl pkeyutl` can use it too.
public final class Ed25519PrivateKey {
    let key: OpaquePointer

    private init(owning key: OpaquePointer) { self.key = key }

    deinit { EVP_PKEY_free(key) }

    /// Generates a new random key.
    public static func generate() throws(OpenSSLError) -> Ed25519PrivateKey {
        guard let ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, nil) else {
            throw .drain("creating an Ed25519 key context")
        }
        defer { EVP_PKEY_CTX_free(ctx) }
        var key: OpaquePointer?
        guard EVP_PKEY_keygen_init(ctx) == 1, EVP_PKEY_keygen(ctx, &key) == 1, let key else {
            throw .drain("generating an Ed25519 key")
        }
        return Ed25519PrivateKey(owning: key)
    }

    /// Parses a PEM private key; `source` names the file in errors.
    public init(pem: [UInt8], source: String) throws(OpenSSLError) {
        let parsed: OpaquePointer? = PEMBio.withReadBio(pem) { PEM_read_bio_PrivateKey($0, nil, nil, nil) }
        guard let parsed else { throw .drain("reading the private key \(source) (expected PEM)") }
        guard EVP_PKEY_get_id(parsed) == EVP_PKEY_ED25519 else {
            EVP_PKEY_free(parsed)
            throw OpenSSLError(operation: "reading the private key \(source)", details: ["not an Ed25519 key"])
        }
        self.key = parsed
    }

    /// The key as PEM (PKCS#8, unencrypted).
    public func pem() throws(OpenSSLError) -> [UInt8] {
        try PEMBio.write { PEM_write_bio_PrivateKey($0, key, nil, nil, 0, nil, nil) == 1 }
    }

    /// The matching public key.
    public func publicKey() throws(OpenSSLError) -> Ed25519PublicKey {
        var raw = [UInt8](repeating: 0, count: 32)
        var length = raw.count
        guard EVP_PKEY_get_raw_public_key(key, &raw, &length) == 1 else {
            throw .drain("extracting the Ed25519 public key")
        }
        return try Ed25519PublicKey(raw: Array(raw.prefix(length)))
    }

    /// Signs `message` (pure Ed25519, no pre-hash), returning the 64-byte signature.
    public func sign(_ message: [UInt8]) throws(OpenSSLError) -> [UInt8] {
        guard let ctx = EVP_MD_CTX_new() else { throw .drain("allocating a signing context") }
        defer { EVP_MD_CTX_free(ctx) }
        guard EVP_DigestSignInit(ctx, nil, nil, nil, key) == 1 else { throw .drain("starting an Ed25519 signature") }
        var signature = [UInt8](repeating: 0, count: 64)
        var length = signature.count
        let ok = message.withUnsafeBufferPointer { EVP_DigestSign(ctx, &signature, &length, $0.baseAddress, $0.count) }
        guard ok == 1 else { throw .drain("signing with Ed25519") }
        return Array(signature.prefix(length))
    }
}
