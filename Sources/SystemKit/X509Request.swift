internal import COpenSSL
import Foundation

/// A certificate signing request (PKCS#10): a node asks the fleet's CA for a new certificate for
/// its own key, signed with that key, so the CA knows the asker holds it.
public final class X509Request: @unchecked Sendable {
    let request: OpaquePointer

    private init(owning request: OpaquePointer) { self.request = request }

    deinit { X509_REQ_free(request) }

    /// A request for `commonName`, for and signed by `key`.
    public init(commonName: String, key: Ed25519PrivateKey) throws(OpenSSLError) {
        guard let request = X509_REQ_new() else { throw .drain("allocating a certificate request") }
        self.request = request
        guard let name = X509_NAME_new() else { throw .drain("allocating a name") }
        defer { X509_NAME_free(name) }
        guard X509_REQ_set_version(request, 0) == 1,
            X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, commonName, -1, -1, 0) == 1,
            X509_REQ_set_subject_name(request, name) == 1, X509_REQ_set_pubkey(request, key.key) == 1,
            X509_REQ_sign(request, key.key, nil) > 0
        else { throw .drain("making a certificate request for \(commonName)") }
    }

    /// Parses a PEM request; `source` names where it came from in errors.
    public init(pem: [UInt8], source: String) throws(OpenSSLError) {
        let parsed: OpaquePointer? = PEMBio.withReadBio(pem) { PEM_read_bio_X509_REQ($0, nil, nil, nil) }
        guard let parsed else { throw .drain("reading the certificate request \(source) (expected PEM)") }
        self.request = parsed
    }

    public func pem() throws(OpenSSLError) -> [UInt8] {
        try PEMBio.write { PEM_write_bio_X509_REQ($0, request) == 1 }
    }

    public var commonName: String? { X509Certificate.commonName(of: X509_REQ_get_subject_name(request)) }

    /// The Ed25519 key asked for, when the request is signed by it (proof of possession).
    public func verifiedKey() throws(OpenSSLError) -> Ed25519PublicKey {
        guard let key = X509_REQ_get0_pubkey(request), EVP_PKEY_get_id(key) == EVP_PKEY_ED25519 else {
            throw OpenSSLError(operation: "checking a certificate request", details: ["not for an Ed25519 key"])
        }
        guard X509_REQ_verify(request, key) == 1 else { throw .drain("checking a certificate request's signature") }
        var raw = [UInt8](repeating: 0, count: 32)
        var length = raw.count
        guard EVP_PKEY_get_raw_public_key(key, &raw, &length) == 1 else { throw .drain("reading a request's key") }
        return try Ed25519PublicKey(raw: Array(raw.prefix(length)))
    }
}
