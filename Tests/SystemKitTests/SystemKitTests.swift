import Foundation
import Logging
import SystemKit
import MicromirrorTestSupport
import Testing

func temporaryDirectory() throws -> String {
    let dir = NSTemporaryDirectory() + "systemkit-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
}

func runTool(_ name: String, _ arguments: [String]) async throws -> (Int32, String) {
    let result = try await ToolRun.run(name, arguments)
    return (result.status, result.combined)
}

@Suite("Ed25519 through OpenSSL")
struct Ed25519Tests {
    @Test("sign and verify; a changed message or signature fails")
    func signVerify() async throws {
        let key = try Ed25519PrivateKey.generate()
        let message = Array("manifest bytes".utf8)
        let signature = try key.sign(message)
        #expect(signature.count == 64)
        let pub = try key.publicKey()
        #expect(pub.verify(signature: signature, message: message))
        #expect(!pub.verify(signature: signature, message: message + [0]))
        var bad = signature
        bad[0] ^= 1
        #expect(!pub.verify(signature: bad, message: message))
        #expect(try key.sign(message) == signature, "Ed25519 signatures are deterministic")
    }

    @Test("PEM round trip; a non-Ed25519 key is refused by name")
    func pem() async throws {
        let key = try Ed25519PrivateKey.generate()
        let pem = try key.pem()
        #expect(String(decoding: pem, as: UTF8.self).hasPrefix("-----BEGIN PRIVATE KEY-----"))
        let again = try Ed25519PrivateKey(pem: pem, source: "k.key")
        #expect(try again.publicKey().raw() == (try key.publicKey().raw()))
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        _ = try await runTool("openssl", ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", dir + "/ec.key"])
        let ec = try Data(contentsOf: URL(fileURLWithPath: dir + "/ec.key"))
        #expect { try Ed25519PrivateKey(pem: Array(ec), source: "ec.key") } throws: { "\($0)".contains("ec.key") && "\($0)".contains("not an Ed25519 key") }
        #expect(throws: OpenSSLError.self) { try Ed25519PublicKey(pem: Array("garbage".utf8), source: "g.pub") }
    }

    @Test("a signature made by `openssl pkeyutl` verifies in ours, and ours in openssl")
    func opensslInterop() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let message = Array("{\"name\":\"micromirror\"}\n".utf8)
        try Data(message).write(to: URL(fileURLWithPath: dir + "/m.json"))
        // openssl signs, we verify.
        await #expect(try await runTool("openssl", ["genpkey", "-algorithm", "ed25519", "-out", dir + "/o.key"]).0 == 0)
        await #expect(try await runTool("openssl", ["pkey", "-in", dir + "/o.key", "-pubout", "-out", dir + "/o.pub"]).0 == 0)
        let signed = try await runTool("openssl", ["pkeyutl", "-sign", "-inkey", dir + "/o.key", "-rawin", "-in", dir + "/m.json", "-out", dir + "/o.sig"])
        #expect(signed.0 == 0, "\(signed.1)")
        let opensslPub = try Ed25519PublicKey(pem: Array(try Data(contentsOf: URL(fileURLWithPath: dir + "/o.pub"))), source: "o.pub")
        let opensslSig = Array(try Data(contentsOf: URL(fileURLWithPath: dir + "/o.sig")))
        #expect(opensslPub.verify(signature: opensslSig, message: message))
        // We sign, openssl verifies.
        let ours = try Ed25519PrivateKey.generate()
        try Data(try ours.publicKey().pem()).write(to: URL(fileURLWithPath: dir + "/ours.pub"))
        try Data(try ours.sign(message)).write(to: URL(fileURLWithPath: dir + "/ours.sig"))
        let verified = try await runTool("openssl", ["pkeyutl", "-verify", "-pubin", "-inkey", dir + "/ours.pub", "-rawin", "-in", dir + "/m.json", "-sigfile", dir + "/ours.sig"])
        #expect(verified.1.contains("Signature Verified Successfully"), "\(verified.1)")
        // And openssl's private key loads in ours and signs the same bytes.
        let loaded = try Ed25519PrivateKey(pem: Array(try Data(contentsOf: URL(fileURLWithPath: dir + "/o.key"))), source: "o.key")
        #expect(try loaded.sign(message) == opensslSig)
    }
}

@Suite("SHA-256, files, libblkid, libarchive, tools")
struct SystemToolsTests {
    @Test("SHA-256 of known vectors, whole and streamed")
    func sha256() {
        #expect(SHA256Hasher.hex(of: [UInt8]()) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        let hasher = SHA256Hasher()
        hasher.update(Array("ab".utf8))
        hasher.update(Array("c".utf8))
        #expect(hasher.finalizeHex() == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    }

    @Test("sparse copy keeps holes and data; data ranges come from SEEK_DATA")
    func sparseCopy() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let source = try RawFile.openForWriting(dir + "/s", create: true)
        try source.truncate(to: 8 << 20)
        try source.write([UInt8](repeating: 1, count: 4096), at: 4 << 20)
        #expect(try source.dataRanges() == [(4 << 20)..<((4 << 20) + 4096)])
        let target = try RawFile.openForWriting(dir + "/t", create: true)
        try target.truncate(to: 16 << 20)
        try target.copySparse(from: source, to: 1 << 20)
        #expect(try target.read(count: 4096, at: 5 << 20) == [UInt8](repeating: 1, count: 4096))
        #expect(try target.dataRanges().reduce(Int64(0)) { $0 + Int64($1.count) } <= 64 << 10)
    }

    @Test("libblkid identifies an ext4 filesystem at an offset")
    func blkid() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let fs = dir + "/fs.img"
        FileManager.default.createFile(atPath: fs, contents: nil)
        try RawFile.openForWriting(fs).truncate(to: 8 << 20)
        #expect(try await runTool("mkfs.ext4", ["-q", "-F", "-L", "probe-me", fs]).0 == 0)
        let disk = try RawFile.openForWriting(dir + "/disk.img", create: true)
        try disk.truncate(to: 16 << 20)
        try disk.copySparse(from: RawFile.openForReading(fs), to: 4 << 20)
        let found = try BlockProbe(path: dir + "/disk.img", offset: 4 << 20, length: 8 << 20).superblocks()
        #expect(found.type == "ext4")
        #expect(found.values["LABEL"] == "probe-me")
        let empty = try BlockProbe(path: dir + "/disk.img", offset: 0, length: 1 << 20).superblocks()
        #expect(empty.type == nil)
    }

    @Test("tar written with libarchive reads back, and GNU tar agrees")
    func tar() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let writer = try TarWriter(path: dir + "/t.tar")
        let payload = [UInt8](repeating: 0x5a, count: 70_000)
        try writer.addFile(name: "first", size: 5, mtime: 1_700_000_000) { write in try Array("hello".utf8).withUnsafeBytes { try write($0) } }
        try writer.addFile(name: "second", size: Int64(payload.count), mtime: 1_700_000_000) { write in try payload.withUnsafeBytes { try write($0) } }
        try writer.finish()
        let reader = try TarReader(path: dir + "/t.tar")
        #expect(try reader.next()?.name == "first")
        #expect(try reader.readAll(limit: 100) == Array("hello".utf8))
        let second = try #require(try reader.next())
        #expect(second.size == 70_000)
        #expect(try reader.readAll(limit: 100_000) == payload)
        #expect(try reader.next() == nil)
        let (status, listing) = try await runTool("tar", ["-tvf", dir + "/t.tar"])
        #expect(status == 0 && listing.contains("second"))
        #expect(listing.contains("2023-11-14"), "mtime must be the one we set: \(listing)")
    }

    @Test("a size that does not match the data is an error")
    func tarSizeMismatch() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let writer = try TarWriter(path: dir + "/t.tar")
        #expect(throws: ArchiveError.self) {
            try writer.addFile(name: "short", size: 10, mtime: 0) { write in try Array("abc".utf8).withUnsafeBytes { try write($0) } }
        }
    }

    @Test("a missing tool names the Debian package to install")
    func missingTool() {
        #expect {
            try CommandRunner.require([Tool("mm-no-such-tool", package: "mm-no-such-package"), Tool("sh", package: "dash")])
        } throws: { error in
            let text = "\(error)"
            return text.contains("mm-no-such-tool") && text.contains("apt-get install mm-no-such-package") && !text.contains("dash")
        }
    }

    @Test("a tool named by its absolute path is found there, and only there")
    func absoluteTool() {
        #expect(Tool("/bin/sh", package: "dash").locate() == "/bin/sh")
        #expect(Tool("/usr/lib/mm-no-such-helper", package: "x").locate() == nil)
    }

    @Test("a failing tool's error carries the command and its output")
    func failingTool() async throws {
        let runner = CommandRunner(logger: Logger(label: "test"))
        await #expect {
            try await runner.run(Tool("sh", package: "dash"), ["-c", "echo boom >&2; exit 3"])
        } throws: { error in
            let text = "\(error)"
            return text.contains("sh -c") && text.contains("boom") && text.contains("3")
        }
        var lines: [String] = []
        let collected = LockedLines()
        try await runner.stream(Tool("sh", package: "dash"), ["-c", "echo one; echo two >&2"]) { collected.append($0) }
        lines = collected.lines
        #expect(lines.sorted() == ["one", "two"])
    }
}

final class LockedLines: @unchecked Sendable {
    private let lock = NSLock()
    private var storage: [String] = []
    func append(_ line: String) { lock.withLock { storage.append(line) } }
    var lines: [String] { lock.withLock { storage } }
}
