import Foundation
import MicromirrorKit
import SystemKit

/// The NOC's certificate authority for the watchtower: every node logs in to the broker with a
/// client certificate for its own Ed25519 identity key, named after its host name and valid for
/// `days` (30 by default). The broker checks the chain, the expiry and the CRL itself, takes the
/// certificate's name as the user name and the client id (so no node can take another's session),
/// and its ACL lets a node publish only under `micromirror/nodes/<its name>/`.
///
/// On disk (`directory`, the NOC's; `ca.key` never leaves it):
/// `ca.key`, `ca.crt`; `broker.key`, `broker.crt` (the broker's TLS certificate); `issued/NODE.crt`
/// (each node's current certificate: its key is the node's identity, pinned at the first issue);
/// `issued.json` (every certificate issued), `revoked.json` and `crl.pem` (what the broker refuses); `mosquitto.conf` and `acl` for the broker.
public struct FleetAuthority: Sendable {
    public let directory: String
    public let certificate: X509Certificate
    private let keyPath: String

    /// The default lifetime of a node's certificate.
    public static let defaultDays = 30

    public var caPath: String { directory + "/ca.crt" }
    public var crlPath: String { directory + "/crl.pem" }
    func issuedPath(_ node: String) -> String { directory + "/issued/" + node + ".crt" }
    var revokedPath: String { directory + "/revoked.json" }

    /// Opens an authority `create` made.
    public init(directory: String) throws {
        self.directory = directory
        self.keyPath = directory + "/ca.key"
        guard let pem = FileManager.default.contents(atPath: directory + "/ca.crt") else {
            throw BuildError(stage: "fleet", "\(directory) holds no fleet CA (no ca.crt); make one with mm-image fleet ca init --ca \(directory)")
        }
        certificate = try X509Certificate(pem: Array(pem), source: directory + "/ca.crt")
    }

    private func signingKey() throws -> Ed25519PrivateKey {
        guard let pem = FileManager.default.contents(atPath: keyPath) else {
            throw BuildError(stage: "fleet", "cannot read the fleet CA's key \(keyPath) (the NOC's; run as its owner)")
        }
        return try Ed25519PrivateKey(pem: Array(pem), source: keyPath)
    }

    /// Makes a new authority in `directory` (which must not hold one): the CA (ten years), the
    /// broker's certificate for `brokerNames` (DNS names or IP addresses the nodes dial), an empty
    /// CRL, and the broker's configuration: nodes on `nodePort` with TLS and certificates, the NOC's
    /// own tools on `localPort` of 127.0.0.1 only.
    @discardableResult
    public static func create(directory: String, brokerNames: [String], nodePort: Int = 8883, localPort: Int = 1883, now: Date = Date()) throws -> FleetAuthority {
        let fm = FileManager.default
        guard !fm.fileExists(atPath: directory + "/ca.crt") else {
            throw BuildError(stage: "fleet", "\(directory) already holds a fleet CA; a second one would lock every node out")
        }
        guard !brokerNames.isEmpty else { throw BuildError(stage: "fleet", "give the broker's name (--broker-name), as the nodes' node files dial it") }
        try fm.createDirectory(atPath: directory + "/issued", withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
        let caKey = try Ed25519PrivateKey.generate()
        let ca = try X509Certificate.issue(
            commonName: "micromirror fleet CA", key: try caKey.publicKey(), role: .authority, serial: randomSerial(), notBefore: now,
            notAfter: now.addingTimeInterval(10 * 365 * 86400), issuer: nil, issuerKey: caKey
        )
        try AtomicFile.write(try caKey.pem(), to: directory + "/ca.key", mode: 0o600)
        try AtomicFile.write(try ca.pem(), to: directory + "/ca.crt", mode: 0o644)
        let brokerKey = try Ed25519PrivateKey.generate()
        let broker = try X509Certificate.issue(
            commonName: brokerNames[0], key: try brokerKey.publicKey(), role: .server(names: brokerNames), serial: randomSerial(), notBefore: now,
            notAfter: now.addingTimeInterval(10 * 365 * 86400), issuer: ca, issuerKey: caKey
        )
        // mosquitto drops to its own user before it reads the key: readable by the broker's group.
        try AtomicFile.write(try brokerKey.pem(), to: directory + "/broker.key", mode: 0o640)
        try AtomicFile.write(try broker.pem(), to: directory + "/broker.crt", mode: 0o644)
        let authority = try FleetAuthority(directory: directory)
        try authority.writeCRL(entries: [], now: now)
        try AtomicFile.write(brokerConfiguration(directory: directory, nodePort: nodePort, localPort: localPort), to: directory + "/mosquitto.conf", mode: 0o644)
        try AtomicFile.write(acl, to: directory + "/acl", mode: 0o644)
        return authority
    }

    /// The ACL of the node listener: a node (user = its certificate's name) reads and writes under
    /// its own topic only; it reads update announcements.
    public static let acl = """
        # micromirror: each node's user name is its certificate's common name (its host name).
        pattern readwrite \(NodeReport.topicPrefix)/%u/#
        topic read micromirror/update/#

        """

    static func brokerConfiguration(directory: String, nodePort: Int, localPort: Int) -> String {
        """
        # micromirror watchtower broker (mosquitto 2), made by mm-image fleet ca init.
        # Run it with mosquitto -c \(directory)/mosquitto.conf, or include it from /etc/mosquitto/conf.d.
        # After mm-image fleet revoke, the broker re-reads crl.pem on SIGHUP (systemctl reload mosquitto).
        per_listener_settings true

        # The nodes: TLS, a client certificate from the fleet CA required, checked against the CRL.
        # The certificate's name is the user name and the client id: no node can take another's session.
        listener \(nodePort)
        cafile \(directory)/ca.crt
        certfile \(directory)/broker.crt
        keyfile \(directory)/broker.key
        crlfile \(directory)/crl.pem
        require_certificate true
        use_identity_as_username true
        use_username_as_clientid true
        allow_anonymous false
        acl_file \(directory)/acl

        # The NOC's own tools (mm-image fleet, the renewal service), on this host only.
        listener \(localPort) 127.0.0.1
        allow_anonymous true

        """
    }

    /// A node name is a host name: it becomes a file name and a topic level.
    public static func checkNodeName(_ node: String) throws {
        let allowed = Set("abcdefghijklmnopqrstuvwxyz0123456789-.")
        guard !node.isEmpty, node.count <= 64, node.lowercased().allSatisfy(allowed.contains), !node.hasPrefix("."), !node.hasPrefix("-"), !node.contains("..") else {
            throw BuildError(stage: "fleet", "\"\(node)\" is not a node's host name (letters, digits, - and ., at most 64: a certificate's name)")
        }
    }

    /// Issues `node` a certificate for `key`, valid `days` from `now`, and (unless `record` is
    /// false: `record(node:certificate:)` after it landed) records it as the node's current one. A
    /// node's key is pinned by its first certificate: another key for the same name is refused
    /// unless `replacingKey` (a node rebuilt from scratch), and then, once recorded, every live
    /// certificate of the old key is revoked.
    public func issue(
        node: String, key: Ed25519PublicKey, days: Int = defaultDays, now: Date = Date(), replacingKey: Bool = false, record: Bool = true
    ) throws -> X509Certificate {
        try Self.checkNodeName(node)
        guard days >= 1 else { throw BuildError(stage: "fleet", "a certificate must be valid at least a day, not \(days)") }
        return try locked {
            if !replacingKey, let current = try current(node: node), current.publicKeyRaw != key.raw() {
                throw BuildError(stage: "fleet", "\(node) already has a certificate for another key (\(issuedPath(node))); a node's key is its identity (give --replace-key for a rebuilt node)")
            }
            let certificate = try clientCertificate(node: node, key: key, days: days, now: now)
            if record { try recordLocked(node: node, certificate: certificate, now: now) }
            return certificate
        }
    }

    /// A node's client certificate from this CA, `days` from `now`.
    private func clientCertificate(node: String, key: Ed25519PublicKey, days: Int, now: Date) throws -> X509Certificate {
        try X509Certificate.issue(
            commonName: node, key: key, role: .client, serial: Self.randomSerial(), notBefore: now,
            notAfter: now.addingTimeInterval(TimeInterval(days) * 86400), issuer: certificate, issuerKey: try signingKey()
        )
    }

    /// Records a certificate `issue(record: false)` made, once it is in place on the node's drive.
    public func record(node: String, certificate: X509Certificate, now: Date = Date()) throws {
        try Self.checkNodeName(node)
        try locked { try recordLocked(node: node, certificate: certificate, now: now) }
    }

    /// A new identity for `node` (its Ed25519 key, made here at flashing time) and its certificate.
    public func issueIdentity(
        node: String, days: Int = defaultDays, now: Date = Date(), replacingKey: Bool = false, record: Bool = true
    ) throws -> (key: Ed25519PrivateKey, certificate: X509Certificate) {
        let key = try Ed25519PrivateKey.generate()
        return (key, try issue(node: node, key: try key.publicKey(), days: days, now: now, replacingKey: replacingKey, record: record))
    }

    /// Answers a node's renewal request: the request must name `node`, be signed by the key of the
    /// node's current certificate (the identity pinned at the first issue), the node must not be
    /// revoked, and its current certificate must be at least half through its life (a node asks two
    /// thirds in: whoever holds a stolen key cannot mint a stock of certificates). Returns the new one.
    public func renew(node: String, request pem: [UInt8], days: Int = defaultDays, now: Date = Date()) throws -> X509Certificate {
        try Self.checkNodeName(node)
        let request = try X509Request(pem: pem, source: "the renewal request of \(node)")
        guard request.commonName == node else {
            throw BuildError(stage: "fleet", "the renewal request on \(node)'s topic names \(request.commonName ?? "nobody"); refused")
        }
        let key = try request.verifiedKey()
        return try locked {
            guard let current = try current(node: node) else { throw BuildError(stage: "fleet", "\(node) was never issued a certificate; refused") }
            guard current.publicKeyRaw == key.raw() else { throw BuildError(stage: "fleet", "the renewal request of \(node) is for another key than its identity; refused") }
            if let revoked = try revoked().first(where: { $0.node == node && $0.serial == current.serial }) {
                throw BuildError(stage: "fleet", "\(node) was revoked at \(revoked.revoked); refused")
            }
            let half = current.notBefore.addingTimeInterval(current.notAfter.timeIntervalSince(current.notBefore) / 2)
            guard now >= half else {
                throw BuildError(stage: "fleet", "\(node)'s certificate (serial \(current.serial)) is not half through its life until \(half); refused (it is on the node's certificate topic)")
            }
            let certificate = try clientCertificate(node: node, key: key, days: days, now: now)
            try recordLocked(node: node, certificate: certificate, now: now)
            return certificate
        }
    }

    /// The node's current certificate, if it was issued one; a record that cannot be read is an
    /// error, not "none" (that would unpin the node's key).
    public func current(node: String) throws -> X509Certificate? {
        guard let pem = FileManager.default.contents(atPath: issuedPath(node)) else { return nil }
        return try X509Certificate(pem: Array(pem), source: issuedPath(node))
    }

    /// Every certificate issued, so a revocation can list them all (`issued.json`).
    public struct Issued: Codable, Sendable, Equatable {
        public var node: String
        public var serial: UInt64
        public var notAfter: Date
        /// The key's ID (`Ed25519PublicKey.keyID`).
        public var key: String
    }

    public func issued() throws -> [Issued] { try Self.readJSON([Issued].self, ledgerPath) ?? [] }

    /// One revoked certificate.
    public struct Revoked: Codable, Sendable, Equatable {
        public var node: String
        public var serial: UInt64
        public var revoked: Date
    }

    public func revoked() throws -> [Revoked] { try Self.readJSON([Revoked].self, revokedPath) ?? [] }

    /// Revokes every certificate of `node` that has not expired (the current one, the one before a
    /// renewal, any of an earlier key): the CRL is rewritten; the broker refuses them once it
    /// re-reads it (SIGHUP). Returns what was added.
    @discardableResult
    public func revoke(node: String, now: Date = Date()) throws -> [Revoked] {
        try Self.checkNodeName(node)
        return try locked {
            guard try current(node: node) != nil else { throw BuildError(stage: "fleet", "\(node) has no certificate from this CA (\(issuedPath(node)))") }
            return try revokeLocked(try issued().filter { $0.node == node && $0.notAfter > now }, now: now)
        }
    }

    private var ledgerPath: String { directory + "/issued.json" }

    private func recordLocked(node: String, certificate: X509Certificate, now: Date) throws {
        guard let raw = certificate.publicKeyRaw else { throw BuildError(stage: "fleet", "the certificate for \(node) is not for an Ed25519 key") }
        let key = try Ed25519PublicKey(raw: raw).keyID
        let previous = try current(node: node)
        var ledger = try issued()
        ledger.append(Issued(node: node, serial: certificate.serial, notAfter: certificate.notAfter, key: key))
        try Self.writeJSON(ledger, to: ledgerPath)
        try AtomicFile.write(try certificate.pem(), to: issuedPath(node), mode: 0o644)
        // A new key for the name: the old drive is not this node any more.
        if let previous, previous.publicKeyRaw != raw {
            try revokeLocked(ledger.filter { $0.node == node && $0.key != key && $0.notAfter > now }, now: now)
        }
    }

    @discardableResult
    private func revokeLocked(_ certificates: [Issued], now: Date) throws -> [Revoked] {
        var list = try revoked()
        let added = certificates.filter { entry in !list.contains { $0.serial == entry.serial } }.map { Revoked(node: $0.node, serial: $0.serial, revoked: now) }
        list += added
        try Self.writeJSON(list, to: revokedPath)
        try writeCRL(entries: list.map { CertificateRevocationList.Entry(serial: $0.serial, revoked: $0.revoked) }, now: now)
        return added
    }

    /// One change to the CA at a time, across processes (the renewal service, flash, revoke).
    private func locked<T>(_ body: () throws -> T) throws -> T {
        let deadline = Date().addingTimeInterval(30)
        while true {
            if let lock = try FileLock.tryAcquire(directory + "/.lock") {
                return try withExtendedLifetime(lock) { try body() }
            }
            guard Date() < deadline else {
                throw BuildError(stage: "fleet", "the fleet CA \(directory) stayed busy for 30 s (another mm-image fleet holds \(directory)/.lock)")
            }
            Thread.sleep(forTimeInterval: 0.05)
        }
    }

    static func readJSON<T: Decodable>(_ type: T.Type, _ path: String) throws -> T? {
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        do { return try decoder.decode(type, from: data) } catch {
            throw BuildError(stage: "fleet", "\(path) cannot be read: \(error)")
        }
    }

    static func writeJSON<T: Encodable>(_ value: T, to path: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        encoder.dateEncodingStrategy = .iso8601
        try AtomicFile.write(Array(try encoder.encode(value)), to: path, mode: 0o644)
    }

    /// The CRL runs as long as the CA: OpenSSL refuses every client once a CRL is past its next update.
    func writeCRL(entries: [CertificateRevocationList.Entry], now: Date) throws {
        let pem = try CertificateRevocationList.pem(entries: entries, issuer: certificate, key: try signingKey(), now: now, nextUpdate: certificate.notAfter)
        try AtomicFile.write(pem, to: crlPath, mode: 0o644)
    }

    /// Serials: random, 63 bits (positive as an ASN.1 integer), so two issues never collide.
    static func randomSerial() -> UInt64 { UInt64.random(in: 1...UInt64(Int64.max)) }
}
