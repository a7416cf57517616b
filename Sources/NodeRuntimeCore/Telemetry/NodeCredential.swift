import Foundation
import MicromirrorKit
import SystemKit

/// The node's login to the watchtower's broker: a certificate from the NOC's fleet CA for the
/// node's own identity key, which the node renews over MQTT before it expires.
///
/// `directory` (on mm-config, owned by the reporting service) holds `node.crt` and `ca.crt`;
/// `keyPath` is the identity key (root-only on mm-config; the service reads a copy).
public struct NodeCredential: Sendable {
    public var directory: String
    public var keyPath: String

    public var certificatePath: String { directory + "/node.crt" }
    public var caPath: String { directory + "/ca.crt" }

    /// The credential in `directory`, or nil when the NOC gave the node none (no `node.crt`);
    /// throws when it is there but incomplete (the key or the CA missing), saying which.
    public static func find(directory: String, keyPath: String) throws -> NodeCredential? {
        let fm = FileManager.default
        guard fm.fileExists(atPath: directory + "/node.crt") else { return nil }
        for path in [keyPath, directory + "/ca.crt"] where !fm.isReadableFile(atPath: path) {
            throw CredentialError("the watchtower certificate \(directory)/node.crt is there but \(path) cannot be read")
        }
        return NodeCredential(directory: directory, keyPath: keyPath)
    }

    public init(directory: String, keyPath: String) {
        self.directory = directory
        self.keyPath = keyPath
    }

    public func certificate() throws -> X509Certificate { try Self.load(certificatePath) }
    public func authority() throws -> X509Certificate { try Self.load(caPath) }

    static func load(_ path: String) throws -> X509Certificate {
        guard let pem = FileManager.default.contents(atPath: path) else { throw FileError("read", path, code: errno) }
        return try X509Certificate(pem: Array(pem), source: path)
    }

    func key() throws -> Ed25519PrivateKey {
        guard let pem = FileManager.default.contents(atPath: keyPath) else { throw FileError("read", keyPath, code: errno) }
        return try Ed25519PrivateKey(pem: Array(pem), source: keyPath)
    }

    /// When to ask for a new certificate: two thirds into the current one's life (ten days before a
    /// 30-day certificate ends), leaving the NOC days to answer.
    public func renewalDue() throws -> Date {
        let current = try certificate()
        return current.notBefore.addingTimeInterval(current.notAfter.timeIntervalSince(current.notBefore) * 2 / 3)
    }

    /// A renewal request for `node`, signed by the identity key.
    public func request(node: String) throws -> [UInt8] {
        try X509Request(commonName: node, key: try key()).pem()
    }

    /// What came of a certificate the NOC sent.
    public enum Installed: Sendable, Equatable {
        /// It is the new certificate, now on disk.
        case renewed(notAfter: Date)
        /// The one we have (the broker's retained copy, sent again at every connect).
        case current
    }

    /// Checks a certificate the NOC sent (lasting longer than the one we have, signed by the fleet
    /// CA, for this node's name and key) and puts it in place atomically; anything else is
    /// refused with why, and the current certificate stays.
    public func install(_ pem: [UInt8], node: String) throws -> Installed {
        let offered = try X509Certificate(pem: pem, source: "the certificate the NOC sent for \(node)")
        let current = try certificate()
        // The broker's retained copy of ours (at every connect), or an older one (a node reflashed
        // under the same name leaves its predecessor's there): nothing to do, nothing to complain of.
        if offered.serial == current.serial || offered.notAfter <= current.notAfter { return .current }
        guard offered.isSigned(by: try authority()) else { throw CredentialError("the certificate sent for \(node) is not signed by the fleet CA in \(caPath)") }
        guard offered.commonName == node else { throw CredentialError("the certificate sent for \(node) names \(offered.commonName ?? "nobody")") }
        guard offered.publicKeyRaw == (try key().publicKey().raw()) else { throw CredentialError("the certificate sent for \(node) is for another key than the node's identity \(keyPath)") }
        try AtomicFile.write(pem, to: certificatePath, mode: 0o644)
        return .renewed(notAfter: offered.notAfter)
    }

    /// A credential problem, said plainly.
    public struct CredentialError: Error, CustomStringConvertible {
        public var description: String
        public init(_ description: String) { self.description = description }
    }

}
