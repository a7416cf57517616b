import Foundation
import MicromirrorTestSupport
import Testing

@Suite("mm-image keygen")
struct KeygenTests {
    @Test("writes a 0600 PEM private key and a public key openssl reads; never overwrites")
    func keygen() async throws {
        let dir = try await TestSupport.scratch("keygen")
        let base = dir + "/nested/release"
        let first = try await TestSupport.check(TestSupport.mmImage, ["keygen", "--out", base])
        #expect(first.stdout.contains("key id"))
        let attributes = try FileManager.default.attributesOfItem(atPath: base + ".key")
        #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o600)
        let text = try await TestSupport.check("openssl", ["pkey", "-in", base + ".key", "-text", "-noout"]).stdout
        #expect(text.contains("ED25519 Private-Key"))
        let pub = try await TestSupport.check("openssl", ["pkey", "-pubin", "-in", base + ".pub", "-text", "-noout"]).stdout
        #expect(pub.contains("ED25519 Public-Key"))
        let before = try Data(contentsOf: URL(fileURLWithPath: base + ".key"))
        let again = try await TestSupport.run(TestSupport.mmImage, ["keygen", "--out", base])
        #expect(again.status == 1)
        #expect(again.stderr.contains("\(base).key already exists"))
        #expect(try Data(contentsOf: URL(fileURLWithPath: base + ".key")) == before)
    }
}
