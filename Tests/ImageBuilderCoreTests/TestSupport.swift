import Foundation
import MicromirrorTestSupport
import Testing

/// Paths and process helpers shared by the integration tests.
enum TestSupport {
    /// The package root, from this file's location.
    static let packageRoot: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()

    /// Where the release programs are (scripts/test.sh sets MM_BINARIES).
    static var binaries: String {
        ProcessInfo.processInfo.environment["MM_BINARIES"] ?? packageRoot + "/.build/release"
    }

    static var mmImage: String { binaries + "/mm-image" }

    /// Scratch space for image builds, wiped by scripts/test.sh before each run.
    static let workRoot: String = {
        let path = packageRoot + "/.build/test-work"
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }()

    /// A fresh directory under the work root.
    static func scratch(_ name: String) async throws -> String {
        let path = workRoot + "/\(name)-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    typealias Output = ToolOutput

    /// Runs a program to completion, capturing its output.
    @discardableResult
    static func run(
        _ executable: String, _ arguments: [String], environment: [String: String] = [:], directory: String? = nil
    ) async throws -> Output {
        try await ToolRun.run(executable, arguments, directory: directory, environment: environment)
    }

    /// Runs a program and requires success, recording its output on failure.
    @discardableResult
    static func check(_ executable: String, _ arguments: [String], environment: [String: String] = [:]) async throws -> Output {
        let output = try await run(executable, arguments, environment: environment)
        guard output.status == 0 else {
            Issue.record("\(executable) \(arguments.joined(separator: " ")) exited \(output.status):\n\(output.combined.suffix(4000))")
            throw TestFailure("\(executable) failed")
        }
        return output
    }

    /// A sparse copy of `image` as `disk.img` in a fresh scratch directory, optionally extended to
    /// `size` bytes (a larger SSD than the image).
    static func copyImage(_ image: String, scratchName: String, size: Int64? = nil) async throws -> String {
        let copy = try await scratch(scratchName) + "/disk.img"
        try await check("cp", ["--sparse=always", image, copy])
        if let size { try await check("truncate", ["-s", "\(size)", copy]) }
        return copy
    }

    /// The file list of slot A's initramfs on the ESP of `image` (extracted with mtools, listed with lsinitramfs).
    static func initramfsListing(image: String, espOffset: Int64) async throws -> String {
        let dir = try await scratch("initrd")
        try await check("mcopy", ["-i", "\(image)@@\(espOffset)", "::/micromirror/a/initrd.img", dir + "/initrd.img"], environment: ["MTOOLS_SKIP_CHECK": "1"])
        return try await check("lsinitramfs", [dir + "/initrd.img"]).stdout
    }

    /// Attaches `length` bytes of `file` at `offset` to a loop device, read-only.
    static func withLoopDevice<T>(_ file: String, offset: Int64 = 0, length: Int64? = nil, _ body: (String) async throws -> T) async throws -> T {
        var args = ["--find", "--show", "--read-only", "--offset", "\(offset)"]
        if let length { args += ["--sizelimit", "\(length)"] }
        let device = try await check("losetup", args + [file]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        do {
            let result = try await body(device)
            _ = try? await run("losetup", ["-d", device])
            return result
        } catch {
            _ = try? await run("losetup", ["-d", device])
            throw error
        }
    }
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
