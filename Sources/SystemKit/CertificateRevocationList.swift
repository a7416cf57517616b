internal import COpenSSL
import Foundation

/// A CRL: the serials a CA has revoked, signed by it. The broker refuses a client certificate whose
/// serial is listed (mosquitto's `crlfile`, re-read on SIGHUP).
public enum CertificateRevocationList {
    /// A revoked serial and when.
    public struct Entry: Sendable, Equatable, Codable {
        public var serial: UInt64
        public var revoked: Date
        public init(serial: UInt64, revoked: Date) {
            self.serial = serial
            self.revoked = revoked
        }
    }

    /// A PEM CRL of `entries` by `issuer` (whose key is `key`), valid from `now` to `nextUpdate`.
    /// OpenSSL refuses every client once a CRL's next update has passed, so it is set far ahead.
    public static func pem(entries: [Entry], issuer: X509Certificate, key: Ed25519PrivateKey, now: Date, nextUpdate: Date) throws(OpenSSLError) -> [UInt8] {
        guard let crl = X509_CRL_new() else { throw .drain("allocating a CRL") }
        defer { X509_CRL_free(crl) }
        guard let last = ASN1_TIME_set(nil, time_t(now.timeIntervalSince1970)) else { throw .drain("making a CRL") }
        defer { ASN1_TIME_free(last) }
        guard let next = ASN1_TIME_set(nil, time_t(nextUpdate.timeIntervalSince1970)) else { throw .drain("making a CRL") }
        defer { ASN1_TIME_free(next) }
        guard X509_CRL_set_version(crl, 1) == 1, X509_CRL_set_issuer_name(crl, X509_get_subject_name(issuer.certificate)) == 1,
            X509_CRL_set1_lastUpdate(crl, last) == 1, X509_CRL_set1_nextUpdate(crl, next) == 1
        else { throw .drain("making a CRL") }
        for entry in entries {
            guard let revoked = X509_REVOKED_new() else { throw .drain("allocating a CRL entry") }
            guard let serial = ASN1_INTEGER_new() else { X509_REVOKED_free(revoked); throw .drain("allocating a serial") }
            defer { ASN1_INTEGER_free(serial) }
            guard let when = ASN1_TIME_set(nil, time_t(entry.revoked.timeIntervalSince1970)) else { X509_REVOKED_free(revoked); throw .drain("making a CRL entry") }
            defer { ASN1_TIME_free(when) }
            guard ASN1_INTEGER_set_uint64(serial, entry.serial) == 1, X509_REVOKED_set_serialNumber(revoked, serial) == 1,
                X509_REVOKED_set_revocationDate(revoked, when) == 1, X509_CRL_add0_revoked(crl, revoked) == 1
            else { X509_REVOKED_free(revoked); throw .drain("adding serial \(entry.serial) to a CRL") }
        }
        guard X509_CRL_sort(crl) == 1, X509_CRL_sign(crl, key.key, nil) > 0 else { throw .drain("signing a CRL") }
        return try PEMBio.write { PEM_write_bio_X509_CRL($0, crl) == 1 }
    }
}
