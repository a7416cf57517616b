import Foundation
import MicromirrorTestSupport
import Testing

/// `mm-image build` with bad input: a clear error, a non-zero exit, and nothing under the final name.
@Suite("mm-image build rejects bad input")
struct BadInputTests {
    struct Run {
        var output: TestSupport.Output
        var out: String
    }

    /// Runs a build in a scratch directory with the given overrides.
    func build(_ name: String, definition: String? = nil, hardware: String? = nil, extra: [String] = [], key: Bool = true) async throws -> Run {
        let dir = try await TestSupport.scratch("bad-\(name)")
        var args = ["build", "--out", dir + "/out", "--cache", dir + "/cache", "--binaries", TestSupport.binaries]
        if let definition {
            let path = dir + "/images/def.yaml"
            try FileManager.default.createDirectory(atPath: dir + "/images/files", withIntermediateDirectories: true)
            try definition.write(toFile: path, atomically: true, encoding: .utf8)
            args += ["--image", path]
        } else {
            args += ["--image", TestSupport.packageRoot + "/images/micromirror.yaml"]
        }
        if let hardware {
            let path = dir + "/hw.yaml"
            try hardware.write(toFile: path, atomically: true, encoding: .utf8)
            args += ["--hardware", path]
        } else {
            args += ["--hardware", TestSupport.packageRoot + "/hardware/qemu-x86_64.yaml"]
        }
        if key {
            try await TestSupport.check(TestSupport.mmImage, ["keygen", "--out", dir + "/k"])
            args += ["--key", dir + "/k.key"]
        }
        let output = try await TestSupport.run(TestSupport.mmImage, args + extra, environment: ["SOURCE_DATE_EPOCH": "1700000000"])
        return Run(output: output, out: dir + "/out")
    }

    /// Nothing was left under a final name, and no work directory either.
    func expectNothingWritten(_ run: Run) throws {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: run.out)) ?? []
        let leftovers = names.filter { $0 != "keys" }
        #expect(leftovers.isEmpty, "left behind in \(run.out): \(leftovers)")
    }

    static let validDefinition = try! String(contentsOfFile: TestSupport.packageRoot + "/images/micromirror.yaml", encoding: .utf8)

    @Test("YAML that does not parse names the file and line")
    func invalidYAML() async throws {
        let run = try await build("yaml", definition: "name: micromirror\npackages: [systemd\nunits: {}\n")
        #expect(run.output.status == 1)
        #expect(run.output.stderr.range(of: #"def\.yaml:\d+: invalid YAML"#, options: .regularExpression) != nil, "\(run.output.stderr)")
        try expectNothingWritten(run)
    }

    @Test("every problem of a definition is reported at once, with line and field")
    func manyProblems() async throws {
        let text = """
            name: micro mirror
            distribution:
              suite: bookworm
              colour: blue
            packages:
              - systemd
              - systemd
              - Not_A_Package
            units:
              enable: systemd-networkd.service
            partitions:
              esp: 256 potatoes
              root: 1GiB
              config: 64MiB
            surprise: true
            """
        let run = try await build("many", definition: text)
        let err = run.output.stderr
        #expect(run.output.status == 1)
        for expected in [
            "def.yaml:1: name: only letters, digits and '-' are allowed",
            "def.yaml:4: distribution.colour: unknown key",
            "def.yaml:7: packages[1]: \"systemd\" is listed twice",
            "def.yaml:8: packages[2]: \"Not_A_Package\" is not a valid Debian package name",
            "def.yaml:10: units.enable: expected a list",
            "def.yaml:12: partitions.esp: expected a size like 256MiB",
            "partitions.data: missing (required)",
            "def.yaml:15: surprise: unknown key",
        ] {
            #expect(err.contains(expected), "missing \"\(expected)\" in:\n\(err)")
        }
        try expectNothingWritten(run)
    }

    @Test("a hardware profile with a key of the wrong type")
    func badHardware() async throws {
        let run = try await build("hw", hardware: "name: qemu\nkernel:\n  options: console=ttyS0\nwatchdog-seconds: soon\n")
        #expect(run.output.status == 1)
        #expect(run.output.stderr.contains("hw.yaml:3: kernel.options: expected a list"), "\(run.output.stderr)")
        #expect(run.output.stderr.contains("hw.yaml:4: watchdog-seconds: expected a whole number"), "\(run.output.stderr)")
    }

    @Test("a missing signing key says how to make one")
    func missingKey() async throws {
        let run = try await build("nokey", extra: ["--key", "/nonexistent/release.key"], key: false)
        #expect(run.output.status == 1)
        #expect(run.output.stderr.contains("signing key /nonexistent/release.key does not exist"), "\(run.output.stderr)")
        #expect(run.output.stderr.contains("mm-image keygen --out /nonexistent/release"))
        try expectNothingWritten(run)
    }

    @Test("a key that is not an Ed25519 PEM key")
    func wrongKey() async throws {
        let dir = try await TestSupport.scratch("badkey")
        try "not a key\n".write(toFile: dir + "/bad.key", atomically: true, encoding: .utf8)
        let run = try await build("wrongkey", extra: ["--key", dir + "/bad.key"], key: false)
        #expect(run.output.status == 1)
        #expect(run.output.stderr.contains("reading the private key \(dir)/bad.key"), "\(run.output.stderr)")
    }

    @Test("a disk too small for the layout")
    func diskTooSmall() async throws {
        let run = try await build("small", extra: ["--disk-size", "1GiB"])
        #expect(run.output.status == 1)
        #expect(run.output.stderr.contains("the disk is 1.0 GiB but the layout needs at least"), "\(run.output.stderr)")
        try expectNothingWritten(run)
    }

    @Test("missing programs name the build command")
    func missingBinaries() async throws {
        let dir = try await TestSupport.scratch("nobin")
        let run = try await build("nobin", extra: ["--binaries", dir])
        #expect(run.output.status == 1)
        #expect(run.output.stderr.contains("\(dir)/mm-firstboot is missing") || run.output.stderr.contains("\(dir)/mm-image is missing"))
        #expect(run.output.stderr.contains("swift build -c release --static-swift-stdlib"))
    }

    @Test("an unknown package is named with the file that lists it; nothing is left behind")
    func unknownPackage() async throws {
        let definition = Self.validDefinition.replacingOccurrences(of: "  - rsync\n", with: "  - rsync\n  - no-such-package-mm\n")
            .replacingOccurrences(of: "source: files/", with: "source: \(TestSupport.packageRoot)/images/files/")
        let run = try await build("unknown", definition: definition)
        #expect(run.output.status == 1)
        #expect(run.output.stderr.contains("unknown package \"no-such-package-mm\" (listed in "), "\(run.output.stderr.suffix(3000))")
        try expectNothingWritten(run)
        let cache = ((run.out as NSString).deletingLastPathComponent as NSString).appendingPathComponent("cache")
        let cached = (try? FileManager.default.contentsOfDirectory(atPath: cache)) ?? []
        #expect(!cached.contains { $0.hasPrefix("rootfs-") }, "a failed rootfs must not be cached: \(cached)")
    }

    @Test("a wrong --recipes path stops the build before anything is written, naming the path")
    func wrongRecipes() async throws {
        let run = try await build("recipes", extra: ["--recipes", "/nonexistent/recipes"])
        #expect(run.output.status == 1)
        #expect(run.output.stderr.contains("--recipes /nonexistent/recipes does not exist"), "\(run.output.stderr)")
        try expectNothingWritten(run)
    }
}
