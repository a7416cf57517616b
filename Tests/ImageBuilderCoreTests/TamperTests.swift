import Foundation
import MicromirrorKit
import MicromirrorTestSupport
import Testing

/// One flipped byte anywhere that matters makes `mm-image verify` fail and say what failed.
@Suite("Tampered artifacts are rejected", .serialized)
struct TamperTests {
    /// Copies the image (sparse) with its manifest and signature into a scratch directory.
    func copyImage(_ a: BuiltImage.Artifacts) async throws -> (image: String, manifest: String) {
        let dir = try await TestSupport.scratch("tamper")
        let image = dir + "/" + (a.image as NSString).lastPathComponent
        try await TestSupport.check("cp", ["--sparse=always", a.image, image])
        try await TestSupport.check("cp", [a.manifest, a.manifest + ".sig", dir])
        return (image, dir + "/manifest.json")
    }

    func flipByte(_ path: String, at offset: Int64) throws {
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: path))
        defer { try? handle.close() }
        try handle.seek(toOffset: UInt64(offset))
        let byte = try handle.read(upToCount: 1)![0]
        try handle.seek(toOffset: UInt64(offset))
        try handle.write(contentsOf: [byte ^ 0x01])
    }

    func verifyFails(_ artifact: String, _ key: String, naming check: String) async throws {
        let result = try await TestSupport.run(TestSupport.mmImage, ["verify", artifact, "--pubkey", key])
        #expect(result.status == 1, "verify should fail: \(result.combined)")
        #expect(result.stderr.contains("verification FAILED: \(check)"), "expected a failure naming \(check), got: \(result.stderr)")
    }

    @Test("a byte flipped inside mm-root-a", arguments: ["mm-root-a", "mm-esp", "mm-config"])
    func partitionByte(label: String) async throws {
        let a = try await BuiltImage.shared.artifacts()
        let (image, manifestPath) = try await copyImage(a)
        let manifest = try Manifest.parse(Array(try Data(contentsOf: URL(fileURLWithPath: manifestPath))), source: manifestPath)
        let partition = try #require(manifest.partitions.first { $0.label == label })
        try flipByte(image, at: partition.offset + partition.contentSize / 2)
        try await verifyFails(image, a.publicKey, naming: "partition \(label)")
    }

    @Test("a byte flipped in the GPT")
    func gptByte() async throws {
        let a = try await BuiltImage.shared.artifacts()
        let (image, _) = try await copyImage(a)
        try flipByte(image, at: 512 + 60)  // inside the disk GUID, covered by the header CRC
        try await verifyFails(image, a.publicKey, naming: "partition table")
    }

    @Test("a byte flipped in the manifest")
    func manifestByte() async throws {
        let a = try await BuiltImage.shared.artifacts()
        let (image, manifest) = try await copyImage(a)
        try flipByte(manifest, at: 40)
        try await verifyFails(image, a.publicKey, naming: "signature")
    }

    @Test("a byte flipped in the signature")
    func signatureByte() async throws {
        let a = try await BuiltImage.shared.artifacts()
        let (image, manifest) = try await copyImage(a)
        try flipByte(manifest + ".sig", at: 10)
        try await verifyFails(image, a.publicKey, naming: "signature")
    }

    /// Offsets of the bundle's entries: ustar headers of 512 bytes, data padded to 512.
    func bundleOffsets(_ path: String) throws -> [String: (data: Int64, size: Int64)] {
        let handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: path))
        defer { try? handle.close() }
        var offsets: [String: (Int64, Int64)] = [:]
        var position: Int64 = 0
        while true {
            try handle.seek(toOffset: UInt64(position))
            let header = try #require(try handle.read(upToCount: 512))
            guard header.count == 512, header[0] != 0 else { break }
            let name = String(decoding: header[0..<100].prefix { $0 != 0 }, as: UTF8.self)
            let sizeText = String(decoding: header[124..<136].prefix { $0 != 0 && $0 != 32 }, as: UTF8.self)
            let size = try #require(Int64(sizeText, radix: 8))
            offsets[name] = (position + 512, size)
            position += 512 + (size + 511) / 512 * 512
        }
        return offsets
    }

    @Test("bundle: a flipped payload byte, manifest byte or signature byte", arguments: ["root.erofs", "initrd.img", "manifest.json", "manifest.json.sig"])
    func bundleByte(entry: String) async throws {
        let a = try await BuiltImage.shared.artifacts()
        let dir = try await TestSupport.scratch("tamper-bundle")
        let bundle = dir + "/b.mmb"
        try await TestSupport.check("cp", [a.bundle, bundle])
        let offsets = try bundleOffsets(bundle)
        let (data, size) = try #require(offsets[entry], "no \(entry) in \(offsets.keys)")
        try flipByte(bundle, at: data + size / 2)
        let check = entry.hasPrefix("manifest") ? "signature" : "payload \(entry)"
        try await verifyFails(bundle, a.publicKey, naming: check)
    }
}
