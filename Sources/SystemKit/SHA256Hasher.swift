internal import COpenSSL
import Foundation

/// Streaming SHA-256 over OpenSSL's EVP interface. Owns its `EVP_MD_CTX`.
public final class SHA256Hasher {
    private let context: OpaquePointer

    /// Starts a new digest.
    public init() {
        guard let context = EVP_MD_CTX_new(), EVP_DigestInit_ex(context, EVP_sha256(), nil) == 1 else {
            fatalError("OpenSSL could not initialise SHA-256: \(OpenSSLError.drain("EVP_DigestInit_ex"))")
        }
        self.context = context
    }

    deinit { EVP_MD_CTX_free(context) }

    /// Feeds `bytes` into the digest.
    public func update(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        // EVP_DigestUpdate only fails on a broken context, which we never hand out.
        precondition(EVP_DigestUpdate(context, base, bytes.count) == 1)
    }

    /// Feeds `bytes` into the digest.
    public func update<Bytes: ContiguousBytes>(_ bytes: Bytes) {
        bytes.withUnsafeBytes { update($0) }
    }

    /// Finishes the digest and returns it as lowercase hex. The hasher cannot be used afterwards.
    public func finalizeHex() -> String {
        var digest = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var length: UInt32 = 0
        precondition(EVP_DigestFinal_ex(context, &digest, &length) == 1)
        return Hex.encode(digest.prefix(Int(length)))
    }

    /// SHA-256 of a byte buffer, as lowercase hex.
    public static func hex<Bytes: ContiguousBytes>(of bytes: Bytes) -> String {
        let hasher = SHA256Hasher()
        hasher.update(bytes)
        return hasher.finalizeHex()
    }
}
