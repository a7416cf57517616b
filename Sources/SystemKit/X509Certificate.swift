internal import COpenSSL
import Foundation

/// An X.509 certificate held by OpenSSL: parsed from PEM, or issued here with an Ed25519 key
/// (the fleet's CA, the watchtower broker's TLS certificate, a node's client certificate).
public final class X509Certificate: @unchecked Sendable {
    let certificate: OpaquePointer

    private init(owning certificate: OpaquePointer) { self.certificate = certificate }

    deinit { X509_free(certificate) }

    /// Parses the first certificate in `pem`; `source` names the file in errors.
    public init(pem: [UInt8], source: String) throws(OpenSSLError) {
        let parsed: OpaquePointer? = PEMBio.withReadBio(pem) { PEM_read_bio_X509($0, nil, nil, nil) }
        guard let parsed else { throw .drain("reading the certificate \(source) (expected PEM)") }
        self.certificate = parsed
    }

    /// The certificate as PEM.
    public func pem() throws(OpenSSLError) -> [UInt8] {
        try PEMBio.write { PEM_write_bio_X509($0, certificate) == 1 }
    }

    /// The subject's common name (a node's host name).
    public var commonName: String? { Self.commonName(of: X509_get_subject_name(certificate)) }
    public var issuerCommonName: String? { Self.commonName(of: X509_get_issuer_name(certificate)) }

    /// The serial number (we issue 64-bit serials).
    public var serial: UInt64 {
        guard let integer = X509_get0_serialNumber(certificate) else { return 0 }
        var value: UInt64 = 0
        return ASN1_INTEGER_get_uint64(&value, integer) == 1 ? value : 0
    }

    public var notBefore: Date { Self.date(X509_get0_notBefore(certificate)) }
    public var notAfter: Date { Self.date(X509_get0_notAfter(certificate)) }

    /// The raw Ed25519 key the certificate is for, or nil when it is another kind of key.
    public var publicKeyRaw: [UInt8]? {
        guard let key = X509_get0_pubkey(certificate), EVP_PKEY_get_id(key) == EVP_PKEY_ED25519 else { return nil }
        var raw = [UInt8](repeating: 0, count: 32)
        var length = raw.count
        guard EVP_PKEY_get_raw_public_key(key, &raw, &length) == 1 else { return nil }
        return Array(raw.prefix(length))
    }

    /// True when `issuer`'s key signed this certificate and names it as the issuer.
    public func isSigned(by issuer: X509Certificate) -> Bool {
        guard let key = X509_get0_pubkey(issuer.certificate) else { return false }
        return X509_check_issued(issuer.certificate, certificate) == X509_V_OK && X509_verify(certificate, key) == 1
    }

    /// What a certificate is for: its extensions.
    public enum Role: Sendable, Equatable {
        /// A CA that signs certificates and CRLs.
        case authority
        /// A TLS server reachable under these DNS names and IP addresses.
        case server(names: [String])
        /// A TLS client (a node logging in to the broker).
        case client
    }

    /// Issues a certificate for `subject` (its common name) and `key`, signed by `issuerKey`, which
    /// `issuer` holds (nil: self-signed, for a CA). Valid from a minute before `notBefore` (clocks
    /// that lag a little still accept it) to `notAfter`.
    public static func issue(
        commonName subject: String, key: Ed25519PublicKey, role: Role, serial: UInt64, notBefore: Date, notAfter: Date,
        issuer: X509Certificate?, issuerKey: Ed25519PrivateKey
    ) throws(OpenSSLError) -> X509Certificate {
        guard let certificate = X509_new() else { throw .drain("allocating a certificate") }
        let made = X509Certificate(owning: certificate)
        let what = "issuing a certificate for \(subject)"
        guard X509_set_version(certificate, 2) == 1, ASN1_INTEGER_set_uint64(X509_get_serialNumber(certificate), serial) == 1,
            ASN1_TIME_set(X509_getm_notBefore(certificate), time_t(notBefore.timeIntervalSince1970) - 60) != nil,
            ASN1_TIME_set(X509_getm_notAfter(certificate), time_t(notAfter.timeIntervalSince1970)) != nil,
            X509_set_pubkey(certificate, key.key) == 1
        else { throw .drain(what) }
        guard let name = X509_NAME_new() else { throw .drain(what) }
        defer { X509_NAME_free(name) }
        guard X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, subject, -1, -1, 0) == 1, X509_set_subject_name(certificate, name) == 1,
            X509_set_issuer_name(certificate, issuer.map { X509_get_subject_name($0.certificate) } ?? name) == 1
        else { throw .drain(what) }
        var context = X509V3_CTX()
        X509V3_set_ctx(&context, issuer?.certificate ?? certificate, certificate, nil, nil, 0)
        var extensions: [(Int32, String)] = [(NID_subject_key_identifier, "hash")]
        switch role {
        case .authority:
            extensions += [(NID_basic_constraints, "critical,CA:TRUE"), (NID_key_usage, "critical,keyCertSign,cRLSign")]
        case .server(let names):
            let alternatives = names.map { IPv4Address($0) != nil || $0.contains(":") ? "IP:" + $0 : "DNS:" + $0 }
            extensions += [(NID_basic_constraints, "critical,CA:FALSE"), (NID_ext_key_usage, "serverAuth"), (NID_subject_alt_name, alternatives.joined(separator: ","))]
        case .client:
            extensions += [(NID_basic_constraints, "critical,CA:FALSE"), (NID_ext_key_usage, "clientAuth")]
        }
        if issuer != nil { extensions.append((NID_authority_key_identifier, "keyid")) }
        for (nid, value) in extensions {
            guard let extensionValue = X509V3_EXT_conf_nid(nil, &context, nid, value) else { throw .drain(what + " (extension \(value))") }
            defer { X509_EXTENSION_free(extensionValue) }
            guard X509_add_ext(certificate, extensionValue, -1) == 1 else { throw .drain(what) }
        }
        // Ed25519 signs the whole message: no digest.
        guard X509_sign(certificate, issuerKey.key, nil) > 0 else { throw .drain(what + " (signing)") }
        return made
    }

    static func commonName(of name: OpaquePointer?) -> String? {
        guard let name else { return nil }
        let index = X509_NAME_get_index_by_NID(name, NID_commonName, -1)
        guard index >= 0, let entry = X509_NAME_get_entry(name, index), let data = X509_NAME_ENTRY_get_data(entry) else { return nil }
        var utf8: UnsafeMutablePointer<UInt8>?
        let length = ASN1_STRING_to_UTF8(&utf8, data)
        guard length >= 0, let utf8 else { return nil }
        defer { COpenSSL_free(utf8) }
        return String(decoding: UnsafeBufferPointer(start: utf8, count: Int(length)), as: UTF8.self)
    }

    static func date(_ time: UnsafePointer<ASN1_TIME>?) -> Date {
        // The distance from the epoch: no struct tm to convert through.
        guard let time, let epoch = ASN1_TIME_set(nil, 0) else { return .distantPast }
        defer { ASN1_TIME_free(epoch) }
        var days: Int32 = 0
        var seconds: Int32 = 0
        guard ASN1_TIME_diff(&days, &seconds, epoch, time) == 1 else { return .distantPast }
        return Date(timeIntervalSince1970: TimeInterval(days) * 86400 + TimeInterval(seconds))
    }
}

/// Whether `text` is a dotted IPv4 address.
private struct IPv4Address {
    init?(_ text: String) {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4, parts.allSatisfy({ UInt8($0) != nil }) else { return nil }
    }
}
