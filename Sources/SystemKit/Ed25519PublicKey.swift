internal import COpenSSL
import Foundation

/// An Ed25519 public key held by OpenSSL; PEM is SubjectPublicKeyInfo (`openssl pkey -pubout`).
/// Immutable once made: verifying uses a fresh context per call, so one key may be shared across threads.
public final class Ed25519PublicKey: @unchecked Sendable {
    let key: OpaquePointer

    deinit { EVP_PKEY_free(key) }

    /// Builds a key from its 32 raw bytes.
    public init(raw: [UInt8]) throws(OpenSSLError) {
        guard raw.count == 32,
            let key = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nil, raw, raw.count)
        else { throw .drain("loading a raw Ed25519 public key of \(raw.count) bytes") }
        self.key = key
    }

    /// Parses a PEM public key; `source` names the file in errors.
    public init(pem: [UInt8], source: String) throws(OpenSSLError) {
        let parsed: OpaquePointer? = PEMBio.withReadBio(pem) { PEM_read_bio_PUBKEY($0, nil, nil, nil) }
        guard let parsed else { throw .drain("reading the public key \(source) (expected PEM)") }
        guard EVP_PKEY_get_id(parsed) == EVP_PKEY_ED25519 else {
            EVP_PKEY_free(parsed)
            throw OpenSSLError(operation: "reading the public key \(source)", details: ["not an Ed25519 key"])
        }
        self.key = parsed
    }

    /// The key as PEM.
    public func pem() throws(OpenSSLError) -> [UInt8] {
        try PEMBio.write { PEM_write_bio_PUBKEY($0, key) == 1 }
    }

    /// The 32 raw key bytes.
    public func raw() -> [UInt8] {
        var raw = [UInt8](repeating: 0, count: 32)
        var length = raw.count
        precondition(EVP_PKEY_get_raw_public_key(key, &raw, &length) == 1)
        return Array(raw.prefix(length))
    }

    /// A short, stable key id: the first 16 hex digits of SHA-256 over the raw key.
    public var keyID: String { String(SHA256Hasher.hex(of: raw()).prefix(16)) }

    /// True when `signature` is a valid Ed25519 signature of `message` by this key.
    public func verify(signature: [UInt8], message: [UInt8]) -> Bool {
        guard let ctx = EVP_MD_CTX_new() else { return false }
        defer { EVP_MD_CTX_free(ctx) }
        guard EVP_DigestVerifyInit(ctx, nil, nil, nil, key) == 1 else {
            ERR_clear_error()
            return false
        }
        let ok = message.withUnsafeBufferPointer {
            EVP_DigestVerify(ctx, signature, signature.count, $0.baseAddress, $0.count)
        }
        ERR_clear_error()
        return ok == 1
    }
}
