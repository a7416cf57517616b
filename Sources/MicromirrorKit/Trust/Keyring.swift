import Foundation
import SystemKit

/// The public keys a node (or the NOC) trusts to sign images.
public struct Keyring: Sendable {
    public struct Member: Sendable {
        public var source: String
        public var key: Ed25519PublicKey
        public init(source: String, key: Ed25519PublicKey) {
            self.source = source
            self.key = key
        }
    }

    public var members: [Member]

    public init(members: [Member]) { self.members = members }

    /// Loads one PEM public key file.
    public static func load(file: String) throws -> Keyring {
        guard let data = FileManager.default.contents(atPath: file) else {
            throw VerificationError(check: "keyring", message: "cannot read public key \(file)")
        }
        return Keyring(members: [Member(source: file, key: try Ed25519PublicKey(pem: Array(data), source: file))])
    }

    /// Loads every `*.pub` in `directory`.
    public static func load(directory: String) throws -> Keyring {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        var members: [Member] = []
        for name in names.sorted() where name.hasSuffix(".pub") {
            members += try load(file: directory + "/" + name).members
        }
        guard !members.isEmpty else { throw VerificationError(check: "keyring", message: "no *.pub keys in \(directory)") }
        return Keyring(members: members)
    }

    /// Checks `signature` over `message`; returns the key file that made it, or throws naming what failed.
    @discardableResult
    public func verify(signature: [UInt8], message: [UInt8], what: String) throws -> String {
        guard signature.count == 64 else {
            throw VerificationError(check: "signature", message: "\(what): signature is \(signature.count) bytes, Ed25519 needs 64")
        }
        for member in members where member.key.verify(signature: signature, message: message) {
            return member.source
        }
        let keys = members.map { "\($0.source) (\($0.key.keyID))" }.joined(separator: ", ")
        throw VerificationError(
            check: "signature",
            message: "\(what) is not signed by a trusted key (tried \(keys)); the manifest or its signature was altered, or it was signed with another key"
        )
    }
}
