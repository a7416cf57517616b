import Foundation
import MicromirrorKit
import MicromirrorTestSupport
import Testing

/// The default image, built once per test run with the real `mm-image` (cold cache) and shared by
/// the integration tests that inspect, verify, tamper with, copy and boot it.
actor BuiltImage {
    static let shared = BuiltImage()

    /// A fixed epoch so the reproducibility test can rebuild the same bytes.
    static let sourceDateEpoch = "1763700000"

    struct Artifacts: Sendable {
        var directory: String
        var image: String
        var bmap: String
        var bundle: String
        var manifest: String
        var publicKey: String
        var privateKey: String
        var buildOutput: String
    }

    private var task: Task<Artifacts, any Error>?

    func artifacts() async throws -> Artifacts {
        if let task { return try await task.value }
        let task = Task { try await Self.build(name: "fixture", keyBase: nil) }
        self.task = task
        return try await task.value
    }

    /// Builds the default definition for QEMU into a fresh output and cache directory.
    /// A later release of the fixture: the same definition (or `image`), signed with the same key,
    /// `version` and `buildNumber` of its own, built on the fixture's rootfs cache (seconds, not minutes).
    static func release(after fixture: Artifacts, version: String, buildNumber: Int64, image: String? = nil) async throws -> Artifacts {
        let cache = ((fixture.directory as NSString).deletingLastPathComponent as NSString).deletingLastPathComponent + "/cache"
        return try await build(
            name: "release-\(buildNumber)", keyBase: String(fixture.privateKey.dropLast(4)), version: version, buildNumber: buildNumber, cache: cache,
            image: image
        )
    }

    static func build(
        name: String, keyBase: String?, version: String = "0.1.0", buildNumber: Int64? = nil, cache: String? = nil, image: String? = nil
    ) async throws -> Artifacts {
        let work = try await TestSupport.scratch(name)
        let key: String
        if let keyBase {
            key = keyBase
        } else {
            key = work + "/keys/test"
            try await TestSupport.check(TestSupport.mmImage, ["keygen", "--out", key])
        }
        let out = work + "/out"
        let result = try await TestSupport.run(
            TestSupport.mmImage,
            [
                "build", "--image", image ?? TestSupport.packageRoot + "/images/micromirror.yaml",
                "--hardware", TestSupport.packageRoot + "/hardware/qemu-x86_64.yaml",
                "--key", key + ".key", "--out", out, "--cache", cache ?? work + "/cache", "--binaries", TestSupport.binaries,
                // A definition copied elsewhere (a broken release) has no recipes/ beside it.
                "--recipes", TestSupport.packageRoot + "/recipes",
                "--version", version,
            ] + (buildNumber.map { ["--build-number", "\($0)"] } ?? []),
            environment: ["SOURCE_DATE_EPOCH": sourceDateEpoch]
        )
        guard result.status == 0 else {
            Issue.record("mm-image build failed (\(result.status)):\n\(result.combined.suffix(6000))")
            throw TestFailure("image build failed")
        }
        let directory = out + "/micromirror-qemu-x86_64-\(version)"
        let base = directory + "/micromirror-qemu-x86_64-\(version)"
        return Artifacts(
            directory: directory, image: base + ".img", bmap: base + ".img.bmap", bundle: base + ".mmb",
            manifest: directory + "/manifest.json", publicKey: key + ".pub", privateKey: key + ".key",
            buildOutput: result.combined
        )
    }
}
