import Foundation
import ImageBuilderCore
import MicromirrorTestSupport
import Testing

/// The build machine's apt sources, in both formats, become the rootfs's sources; a line apt would
/// read but we cannot use is an error naming its file and line, never silently skipped.
@Suite("Apt sources of the build machine; the recipes directory")
struct AptSourcesTests {
    /// A scratch /etc/apt with the given files.
    func aptRoot(_ files: [String: String]) throws -> String {
        let root = NSTemporaryDirectory() + "apt-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: root + "/sources.list.d", withIntermediateDirectories: true)
        for (name, text) in files { try text.write(toFile: root + "/" + name, atomically: true, encoding: .utf8) }
        return root
    }

    @Test("a one-line source with several options keeps its signed-by and architectures")
    func oneLineWithOptions() throws {
        let root = try aptRoot([
            "sources.list": """
                # the build machine's mirror
                deb [arch=amd64 signed-by=/usr/share/keyrings/x.gpg] http://deb.example.org/debian bookworm main contrib
                deb [ arch=amd64,i386 trusted=yes ] http://deb.example.org/debian bookworm-updates main # trailing comment
                deb-src http://deb.example.org/debian bookworm main
                deb http://deb.example.org/debian trixie main

                """
        ])
        let text = try AptSources.fromHost(suite: "bookworm", components: ["main", "non-free-firmware"], root: root)
        #expect(
            text == """
                Types: deb
                URIs: http://deb.example.org/debian
                Suites: bookworm
                Components: main non-free-firmware
                Architectures: amd64
                Signed-By: /usr/share/keyrings/x.gpg

                Types: deb
                URIs: http://deb.example.org/debian
                Suites: bookworm-updates
                Components: main non-free-firmware
                Architectures: amd64 i386
                Trusted: yes

                """
        )
    }

    @Test("deb822 .sources: several suites, comments, Enabled: no, an inline Signed-By key")
    func deb822() throws {
        let root = try aptRoot([
            "sources.list.d/debian.sources": """
                Types: deb deb-src
                # a comment inside the paragraph
                URIs: http://deb.example.org/debian
                Suites: bookworm bookworm-updates trixie
                Components: main
                Signed-By:
                 -----BEGIN PGP PUBLIC KEY BLOCK-----
                 .
                 mQINBGPL
                 -----END PGP PUBLIC KEY BLOCK-----

                types: deb
                uris: http://off.example.org/debian
                suites: bookworm
                components: main
                enabled: no

                """
        ])
        let text = try AptSources.fromHost(suite: "bookworm", components: ["main"], root: root)
        #expect(text.hasPrefix("Types: deb\nURIs: http://deb.example.org/debian\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: \n -----BEGIN"), "\(text)")
        #expect(text.contains(" mQINBGPL\n -----END PGP PUBLIC KEY BLOCK-----\n"))
        #expect(!text.contains("off.example.org"))
    }

    @Test("lines apt would read but we cannot use are errors with file and line")
    func badLines() throws {
        let cases: [(String, String, String)] = [
            ("sources.list", "\ndeb [arch=amd64 http://deb.example.org/debian bookworm main\n", "sources.list:2: the options' \"[\" is never closed"),
            ("sources.list", "deb http://deb.example.org/debian\n", "sources.list:1: expected \"deb [options] URI SUITE COMPONENT...\""),
            ("sources.list", "deb http://deb.example.org/debian bookworm\n", "sources.list:1: suite bookworm has no components"),
            ("sources.list", "dbe http://deb.example.org/debian bookworm main\n", "sources.list:1: \"dbe\" is not a source type"),
            ("sources.list.d/x.list", "deb [signed-by] http://deb.example.org/debian bookworm main\n", "x.list:1: option \"signed-by\" is not name=value"),
            ("sources.list.d/y.sources", "Types: deb\nURIs: http://deb.example.org/debian\nComponents: main\n", "y.sources:1: this paragraph has no Suites field"),
            ("sources.list.d/z.sources", "Types: deb\nthis is not a field\n", "z.sources:2: \"this is not a field\" is not a \"Field: value\" line"),
        ]
        for (name, text, expected) in cases {
            let root = try aptRoot([name: text])
            #expect {
                try AptSources.fromHost(suite: "bookworm", components: ["main"], root: root)
            } throws: { error in
                "\(error)".contains(root + "/" + name) && "\(error)".contains(expected) && "\(error)".contains("distribution.mirror")
            }
        }
    }

    @Test("the build machine's own sources parse")
    func hostSources() throws {
        let text = try AptSources.fromHost(suite: "bookworm", components: ["main"])
        #expect(text.contains("Suites: bookworm"))
    }

    @Test("--recipes: a missing path, a file, and a directory without *.yaml are errors naming the path")
    func recipes() throws {
        let dir = NSTemporaryDirectory() + "recipes-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try "not a recipe\n".write(toFile: dir + "/README.md", atomically: true, encoding: .utf8)
        #expect { try RecipeFiles.list(in: dir + "/nope") } throws: { "\($0)".contains("--recipes \(dir)/nope does not exist") }
        #expect { try RecipeFiles.list(in: dir + "/README.md") } throws: { "\($0)".contains("--recipes \(dir)/README.md is not a directory") }
        #expect { try RecipeFiles.list(in: dir) } throws: { "\($0)".contains("--recipes \(dir) holds no recipe (*.yaml)") }
        #expect(try RecipeFiles.list(in: TestSupport.packageRoot + "/recipes").contains("debian.yaml"))
    }
}
