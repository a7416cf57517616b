import Foundation
import MicromirrorKit
import SystemKit
import Testing

@Suite("Manifest, bundle and block map")
struct ManifestBundleTests {
    static func sample(payloads: [Manifest.File] = []) -> Manifest {
        Manifest(
            name: "micromirror", version: "0.1.0", buildNumber: 42, hardware: "qemu-x86_64", sourceDateEpoch: 1_700_000_000,
            kernelVersion: "6.1.0-56-amd64", kernelCommandLine: "ro rootfstype=erofs console=ttyS0,115200",
            diskGUID: GUID.derived(seed: "s", purpose: "disk"),
            disk: Manifest.File(name: "m.img", size: 4096, sha256: String(repeating: "a", count: 64)),
            partitions: [
                Manifest.Partition(
                    label: "mm-esp", typeGUID: PartitionType.esp, uuid: GUID.derived(seed: "s", purpose: "esp"), offset: 1 << 20,
                    size: 1 << 20, filesystem: "vfat", filesystemUUID: "1234-ABCD", contentSize: 1 << 20, sha256: String(repeating: "b", count: 64)
                )
            ],
            payloads: payloads
        )
    }

    @Test("canonical bytes: sorted keys, no escaped slashes, trailing newline, stable through a round trip")
    func canonicalBytes() throws {
        let manifest = Self.sample()
        let bytes = try manifest.canonicalBytes()
        let text = String(decoding: bytes, as: UTF8.self)
        #expect(text.hasSuffix("}\n"))
        #expect(text.hasPrefix("{\n  \"buildNumber\" : 42,\n  \"disk\" : {\n"))
        let keys = text.split(separator: "\n").filter { $0.hasPrefix("  \"") }.map { $0.split(separator: "\"")[1] }
        #expect(keys == keys.sorted())
        #expect(!text.contains("\\/"))
        let reparsed = try Manifest.parse(bytes, source: "test")
        #expect(reparsed == manifest)
        #expect(try reparsed.canonicalBytes() == bytes)
    }

    @Test("a manifest of another format is refused by name")
    func wrongFormat() throws {
        var manifest = Self.sample()
        manifest.format = 99
        let bytes = try manifest.canonicalBytes()
        #expect { try Manifest.parse(bytes, source: "m.json") } throws: { "\($0)".contains("m.json has format 99") }
    }

    func tempDir() throws -> String {
        let dir = NSTemporaryDirectory() + "mmb-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    /// Writes a signed bundle with two small payloads; returns its path and the key.
    func makeBundle(_ dir: String) throws -> (String, Keyring, [UInt8]) {
        let one = [UInt8](repeating: 7, count: 100_000)
        let two = Array("second payload\n".utf8)
        try Data(one).write(to: URL(fileURLWithPath: dir + "/one"))
        try Data(two).write(to: URL(fileURLWithPath: dir + "/two"))
        let manifest = Self.sample(payloads: [
            Manifest.File(name: "root.erofs", size: Int64(one.count), sha256: SHA256Hasher.hex(of: one)),
            Manifest.File(name: "vmlinuz", size: Int64(two.count), sha256: SHA256Hasher.hex(of: two)),
        ])
        let key = try Ed25519PrivateKey.generate()
        let bytes = try manifest.canonicalBytes()
        let path = dir + "/b.mmb"
        try Bundle.write(
            to: path, manifestBytes: bytes, signature: try key.sign(bytes), manifest: manifest,
            payloadFiles: ["root.erofs": dir + "/one", "vmlinuz": dir + "/two"]
        )
        return (path, Keyring(members: [.init(source: "test.pub", key: try key.publicKey())]), one)
    }

    @Test("a bundle verifies, streams its payloads, and lists them in order")
    func bundleRoundTrip() async throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (path, keyring, one) = try makeBundle(dir)
        var received: [String: [UInt8]] = [:]
        let manifest = try Bundle.verify(path: path, keyring: keyring) { name, chunk in received[name, default: []] += chunk }
        #expect(manifest.payloads.map(\.name) == ["root.erofs", "vmlinuz"])
        #expect(received["root.erofs"] == one)
        let listing = try await Run.tool("tar", ["-tf", path])
        #expect(listing.split(separator: "\n") == ["manifest.json", "manifest.json.sig", "root.erofs", "vmlinuz"])
    }

    /// Feeds `bytes` to a `BundleStream` in pieces of the given sizes, cycling.
    func stream(_ bytes: [UInt8], keyring: Keyring, pieces: [Int]) throws -> (BundleStream, Manifest) {
        let stream = BundleStream(keyring: keyring, source: "b.mmb")
        var at = 0
        var i = 0
        while at < bytes.count {
            let end = min(bytes.count, at + pieces[i % pieces.count])
            try bytes[at..<end].withUnsafeBytes { try stream.feed($0) }
            at = end
            i += 1
        }
        return (stream, try stream.finish())
    }

    @Test("a bundle checked as it streams in, in pieces of any size, passes as Bundle.verify does; every damage is named where it is")
    func streamed() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (path, keyring, _) = try makeBundle(dir)
        let bytes = Array(try Data(contentsOf: URL(fileURLWithPath: path)))
        let verified = try Bundle.verify(path: path, keyring: keyring)
        for pieces in [[1], [511, 513], [4096], [bytes.count], [7, 100_003, 2]] {
            let (stream, manifest) = try stream(bytes, keyring: keyring, pieces: pieces)
            #expect(manifest == verified && stream.checkedPayloads == ["root.erofs", "vmlinuz"], "pieces \(pieces)")
        }
        // The manifest is known, its signature checked, from the first entries alone.
        let early = BundleStream(keyring: keyring, source: "b.mmb")
        try bytes[..<4096].withUnsafeBytes { try early.feed($0) }
        #expect(early.manifest == verified && early.checkedPayloads.isEmpty)

        func refused(_ damaged: [UInt8], _ words: String, _ comment: String, keyring ring: Keyring? = nil) {
            #expect(throws: VerificationError.self, "\(comment)") { try stream(damaged, keyring: ring ?? keyring, pieces: [1000]) }
            do { _ = try stream(damaged, keyring: ring ?? keyring, pieces: [1000]) } catch {
                #expect("\(error)".contains(words), "\(comment): \(error)")
            }
        }
        func flip(_ at: Int) -> [UInt8] {
            var copy = bytes
            copy[at] ^= 0x01
            return copy
        }
        // Entries at 512 (manifest), then its signature and the payloads after it, 512-aligned.
        let manifestSize = try Manifest.parse(Array(bytes[512..<(512 + 8192)]).prefix { $0 != 0 }.map { $0 }, source: "t").canonicalBytes().count
        let signatureAt = 512 + (manifestSize + 511) / 512 * 512 + 512
        let rootAt = signatureAt + 512 + 512
        refused(flip(600), "not signed by a trusted key", "a flipped manifest byte")
        refused(flip(signatureAt + 3), "not signed by a trusted key", "a flipped signature byte")
        refused(flip(rootAt + 50_000), "payload root.erofs: SHA-256 is", "a flipped payload byte")
        // A payload renamed in its header, the header's checksum made to add up again.
        var renamed = flip(rootAt - 512 + 5)
        let sum = (0..<512).reduce(0) { $0 + ((148..<156).contains($1) ? 32 : Int(renamed[rootAt - 512 + $1])) }
        renamed.replaceSubrange((rootAt - 512 + 148)..<(rootAt - 512 + 155), with: Array(String(format: "%06o\0", sum).utf8))
        refused(renamed, "unexpected entry in b.mmb; expected root.erofs", "a payload renamed in its header")
        refused(flip(100), "checksum does not add up", "a damaged header")
        refused(Array(bytes[..<(rootAt + 1000)]), "inside an entry", "a bundle cut inside a payload")
        refused(Array(bytes[..<(rootAt - 512)]), "payload root.erofs: missing", "a bundle cut before its payloads")
        refused(Array(bytes[..<300]), "before its manifest", "a bundle cut in its first header")
        refused(bytes + [1], "data after the end of the archive", "bytes after the end")
        let stranger = Keyring(members: [.init(source: "stranger.pub", key: try Ed25519PrivateKey.generate().publicKey())])
        refused(bytes, "not signed by a trusted key", "an untrusted signer", keyring: stranger)
    }

    @Test("a payload name too long for a ustar header goes through a pax header, streamed as by libarchive")
    func streamedPax() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let long = String(repeating: "p", count: 150) + ".img"
        let body = [UInt8](repeating: 3, count: 3000)
        try Data(body).write(to: URL(fileURLWithPath: dir + "/p"))
        let manifest = Self.sample(payloads: [Manifest.File(name: long, size: 3000, sha256: SHA256Hasher.hex(of: body))])
        let key = try Ed25519PrivateKey.generate()
        let keyring = Keyring(members: [.init(source: "t.pub", key: try key.publicKey())])
        let bytes = try manifest.canonicalBytes()
        try Bundle.write(to: dir + "/b.mmb", manifestBytes: bytes, signature: try key.sign(bytes), manifest: manifest, payloadFiles: [long: dir + "/p"])
        let archive = Array(try Data(contentsOf: URL(fileURLWithPath: dir + "/b.mmb")))
        #expect(try Bundle.verify(path: dir + "/b.mmb", keyring: keyring) == manifest)
        let (stream, streamed) = try stream(archive, keyring: keyring, pieces: [333])
        #expect(streamed == manifest && stream.checkedPayloads == [long])
    }

    @Test("a bundle written twice from the same inputs is byte-identical")
    func bundleDeterministic() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let one = [UInt8](repeating: 1, count: 5000)
        try Data(one).write(to: URL(fileURLWithPath: dir + "/one"))
        let manifest = Self.sample(payloads: [Manifest.File(name: "root.erofs", size: 5000, sha256: SHA256Hasher.hex(of: one))])
        let bytes = try manifest.canonicalBytes()
        for name in ["a.mmb", "b.mmb"] {
            try Bundle.write(to: dir + "/" + name, manifestBytes: bytes, signature: [UInt8](repeating: 9, count: 64), manifest: manifest, payloadFiles: ["root.erofs": dir + "/one"])
        }
        #expect(FileManager.default.contentsEqual(atPath: dir + "/a.mmb", andPath: dir + "/b.mmb"))
    }

    @Test("a bundle signed by an untrusted key is refused before any payload is read")
    func untrusted() async throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (path, _, _) = try makeBundle(dir)
        let stranger = Keyring(members: [.init(source: "stranger.pub", key: try Ed25519PrivateKey.generate().publicKey())])
        var sunk = 0
        #expect { try Bundle.verify(path: path, keyring: stranger) { _, c in sunk += c.count } } throws: { error in
            (error as? VerificationError)?.check == "signature"
        }
        #expect(sunk == 0)
    }

    @Test("the block map lists only data ranges and passes bmaptool copy")
    func blockMap() async throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/sparse.img"
        let file = try RawFile.openForWriting(path, create: true, truncate: true)
        try file.truncate(to: 16 << 20)
        try file.write([UInt8](repeating: 0xab, count: 8192), at: 0)
        try file.write([UInt8](repeating: 0xcd, count: 100), at: 10 << 20)
        let blocks = try BlockMap.mappedBlocks(of: file)
        #expect(blocks.first?.lowerBound == 0)
        #expect(blocks.contains { $0.contains((10 << 20) / 4096) })
        #expect(blocks.reduce(0) { $0 + $1.count } < 100)
        let xml = try BlockMap.generate(for: file)
        try xml.write(toFile: path + ".bmap", atomically: true, encoding: .utf8)
        let copy = dir + "/copy.img"
        let output = try await Run.tool("bmaptool", ["copy", "--bmap", path + ".bmap", path, copy])
        #expect(FileManager.default.contentsEqual(atPath: path, andPath: copy), "\(output)")
        // A corrupted range checksum must make bmaptool refuse.
        let broken = xml.replacingOccurrences(of: "chksum=\"", with: "chksum=\"0").replacingOccurrences(of: "0\">", with: "\">")
        try broken.write(toFile: path + ".bad.bmap", atomically: true, encoding: .utf8)
        let refused = try await Run.tool("bmaptool", ["copy", "--bmap", path + ".bad.bmap", path, dir + "/copy2.img"])
        #expect(refused.lowercased().contains("error") || refused.lowercased().contains("checksum"), "\(refused)")
    }
}
