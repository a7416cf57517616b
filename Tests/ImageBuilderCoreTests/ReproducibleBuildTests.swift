import Foundation
import MicromirrorTestSupport
import Testing

/// Same inputs and SOURCE_DATE_EPOCH, clean caches: the same bytes.
@Suite("Reproducible builds")
struct ReproducibleBuildTests {
    @Test("a second cold build is byte-identical: disk image, bundle, block map, manifest, signature")
    func byteIdentical() async throws {
        let first = try await BuiltImage.shared.artifacts()
        let keyBase = String(first.privateKey.dropLast(4))
        let second = try await BuiltImage.build(name: "rebuild", keyBase: keyBase)
        #expect(!second.buildOutput.contains("reused cached"), "the second build must start from an empty cache")
        for (a, b) in [
            (first.image, second.image), (first.bundle, second.bundle), (first.bmap, second.bmap),
            (first.manifest, second.manifest), (first.manifest + ".sig", second.manifest + ".sig"),
        ] {
            let result = try await TestSupport.run("cmp", [a, b])
            #expect(result.status == 0, "\((a as NSString).lastPathComponent) differs between builds: \(result.combined)")
        }
    }
}
