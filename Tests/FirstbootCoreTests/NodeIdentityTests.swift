import FirstbootCore
import Foundation
import Logging
import MicromirrorTestSupport
import SystemKit
import Testing

/// The identity on mm-config: made on the first boot, or kept when the NOC put one there at flashing
/// time (its watchtower certificate is for that key).
@Suite("Node identity")
struct NodeIdentityTests {
    @Test("the first boot makes what is missing and keeps an identity key the NOC placed; a second boot makes nothing")
    func keepsPlacedKey() async throws {
        let state = try ToolRun.scratchDirectory("identity")
        defer { try? FileManager.default.removeItem(atPath: state) }
        let placed = try Ed25519PrivateKey.generate()
        try FileManager.default.createDirectory(atPath: state + "/identity", withIntermediateDirectories: true)
        try AtomicFile.write(try placed.pem(), to: state + "/identity/node.key", mode: 0o600)
        try AtomicFile.write(try placed.publicKey().pem(), to: state + "/identity/node.pub")
        let identity = NodeIdentity(state: state, runner: CommandRunner(logger: Logger(label: "test")))
        #expect(try await identity.ensure() == ["ssh host key", "machine id"])
        let expected = try placed.pem()
        #expect(FileManager.default.contents(atPath: state + "/identity/node.key").map(Array.init) == expected, "the NOC's key was replaced")
        #expect(try await identity.ensure() == [])
        // Without one, the first boot makes it.
        try FileManager.default.removeItem(atPath: state + "/identity/node.pub")
        #expect(try await identity.ensure() == ["node key"])
    }
}
