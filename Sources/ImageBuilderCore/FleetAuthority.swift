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
/// `revoked.json` and `crl.pem` (what the broker refuses); `mosquitto.conf` and `acl` for the broker.
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
        guard !node.isEmpty, node.count <= 253, node.lowercased().allSatisfy(allowed.contains), !node.hasPrefix("."), !node.hasPrefix("-"), !node.contains("..") else {
            throw BuildError(stage: "fleet", "\"\(node)\" is not a node's host name (letters, digits, - and .)")
        }
    }

    /// Issues `node` a certificate for `key`, valid `days` from `now`, and records it as the node's
    /// current one. A node's key is pinned by its first certificate: another key for the same
    /// name is refused unless `replacingKey` (a node rebuilt from scratch).
    public func issue(node: String, key: Ed25519PublicKey, days: Int = defaultDays, now: Date = Date(), replacingKey: Bool = false) throws -> X509Certificate {
        try Self.checkNodeName(node)
        guard days >= 1 else { throw BuildError(stage: "fleet", "a certificate must be valid at least a day, not \(days)") }
        if !replacingKey, let current = current(node: node), current.publicKeyRaw != key.raw() {
            throw BuildError(stage: "fleet", "\(node) already has a certificate for another key (\(issuedPath(node))); a node's key is its identity (give --replace-key for a rebuilt node)")
        }
        let certificate = try X509Certificate.issue(
            commonName: node, key: key, role: .client, serial: Self.randomSerial(), notBefore: now,
            notAfter: now.addingTimeInterval(TimeInterval(days) * 86400), issuer: self.certificate, issuerKey: try signingKey()
        )
        try AtomicFile.write(try certificate.pem(), to: issuedPath(node), mode: 0o644)
        return certificate
    }

    /// A new identity for `node` (its Ed25519 key, made here at flashing time) and its certificate.
    public func issueIdentity(node: String, days: Int = defaultDays, now: Date = Date(), replacingKey: Bool = false) throws -> (key: Ed25519PrivateKey, certificate: X509Certificate) {
        let key = try Ed25519PrivateKey.generate()
        return (key, try issue(node: node, key: try key.publicKey(), days: days, now: now, replacingKey: replacingKey))
    }

    /// Answers a node's renewal request: the request must name `node`, be signed by the key of the
    /// node's current certificate (the identity pinned at the first issue), and the node must not be
    /// revoked. Returns the new certificate.
    public func renew(node: String, request pem: [UInt8], days: Int = defaultDays, now: Date = Date()) throws -> X509Certificate {
        try Self.checkNodeName(node)
        let request = try X509Request(pem: pem, source: "the renewal request of \(node)")
        guard request.commonName == node else {
            throw BuildError(stage: "fleet", "the renewal request on \(node)'s topic names \(request.commonName ?? "nobody"); refused")
        }
        let key = try request.verifiedKey()
        guard let current = current(node: node) else { throw BuildError(stage: "fleet", "\(node) was never issued a certificate; refused") }
        guard current.publicKeyRaw == key.raw() else { throw BuildError(stage: "fleet", "the renewal request of \(node) is for another key than its identity; refused") }
        if let revoked = try revoked().first(where: { $0.node == node && $0.serial == current.serial }) {
            throw BuildError(stage: "fleet", "\(node) was revoked at \(revoked.revoked); refused")
        }
        return try issue(node: node, key: key, days: days, now: now)
    }

    /// The node's current certificate, if it was issued one.
    public func current(node: String) -> X509Certificate? {
        guard let pem = FileManager.default.contents(atPath: issuedPath(node)) else { return nil }
        return try? X509Certificate(pem: Array(pem), source: issuedPath(node))
    }

    /// One revoked certificate.
    public struct Revoked: Codable, Sendable, Equatable {
        public var node: String
        public var serial: UInt64
        public var revoked: Date
    }

    public func revoked() throws -> [Revoked] {
        guard let data = FileManager.default.contents(atPath: revokedPath) else { return [] }
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        do { return try decoder.decode([Revoked].self, from: data) } catch {
            throw BuildError(stage: "fleet", "\(revokedPath) is not a list of revoked certificates: \(error)")
        }
    }

    /// Revokes `node`'s current certificate (every earlier one expired or was listed before):
    /// the CRL is rewritten; the broker refuses it once it re-reads the CRL (SIGHUP).
    @discardableResult
    public func revoke(node: String, now: Date = Date()) throws -> Revoked {
        try Self.checkNodeName(node)
        guard let current = current(node: node) else { throw BuildError(stage: "fleet", "\(node) has no certificate from this CA (\(issuedPath(node)))") }
        var list = try revoked()
        let entry = Revoked(node: node, serial: current.serial, revoked: now)
        if !list.contains(where: { $0.serial == entry.serial }) { list.append(entry) }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        encoder.dateEncodingStrategy = .iso8601
        try AtomicFile.write(Array(try encoder.encode(list)), to: revokedPath, mode: 0o644)
        try writeCRL(entries: list.map { CertificateRevocationList.Entry(serial: $0.serial, revoked: $0.revoked) }, now: now)
        return entry
    }

    /// The CRL runs as long as the CA: OpenSSL refuses every client once a CRL is past its next update.
    func writeCRL(entries: [CertificateRevocationList.Entry], now: Date) throws {
        let pem = try CertificateRevocationList.pem(entries: entries, issuer: certificate, key: try signingKey(), now: now, nextUpdate: certificate.notAfter)
        try AtomicFile.write(pem, to: crlPath, mode: 0o644)
    }

    /// Serials: random, 63 bits (positive as an ASN.1 integer), so two issues never collide.
    static func randomSerial() -> UInt64 { UInt64.random(in: 1...UInt64(Int64.max)) }
}
