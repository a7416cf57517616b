import MicromirrorKit
import Testing

@Suite("YAML reading with line numbers")
struct YAMLConfigTests {
    @Test("byte sizes", arguments: [("512", 512), ("64K", 65536), ("256MiB", 268_435_456), ("2GiB", 2_147_483_648), ("2GB", 2_000_000_000)] as [(String, Int64)])
    func sizes(text: String, value: Int64) {
        #expect(ByteSize.parse(text) == value)
    }

    @Test("bad sizes", arguments: ["", "MiB", "12 potatoes", "-5", "99999999999999999999T"])
    func badSizes(text: String) {
        #expect(ByteSize.parse(text) == nil)
    }

    @Test("unknown, duplicate, missing and mistyped keys are all reported with lines")
    func problems() throws {
        let root = try YAMLConfig.parse("a: 1\nb: [x]\nc: {d: 1}\n", file: "f.yaml")
        _ = root.required("a")?.int()
        _ = root.required("b")?.string()
        _ = root.required("missing")
        root.rejectUnknownKeys()
        let text = root.diagnostics.problems.map(\.description)
        #expect(text.contains("f.yaml:2: b: expected a single value, found a list"))
        #expect(text.contains("f.yaml:1: missing: missing (required)"))
        #expect(text.contains { $0.hasPrefix("f.yaml:3: c: unknown key") })
    }

    @Test("a duplicate key names its line")
    func duplicate() {
        #expect { try YAMLConfig.parse("a: 1\nb: 2\na: 3\n", file: "d.yaml") } throws: { error in
            "\(error)".contains("d.yaml:") && "\(error)".contains("duplicate key a")
        }
    }

    @Test("broken YAML names the line")
    func broken() {
        #expect { try YAMLConfig.parse("a: [1, 2\nb: 3\n", file: "x.yaml") } throws: { error in
            "\(error)".contains("x.yaml:") && "\(error)".contains("invalid YAML")
        }
    }
}
