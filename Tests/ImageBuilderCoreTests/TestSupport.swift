import Foundation
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
    static func scratch(_ name: String) throws -> String {
        let path = workRoot + "/\(name)-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    struct Output {
        var status: Int32
        var stdout: String
        var stderr: String
        var combined: String { stdout + stderr }
    }

    /// Runs a program to completion, capturing its output (through files: no pipe-buffer deadlocks).
    @discardableResult
    static func run(
        _ executable: String, _ arguments: [String], environment: [String: String] = [:], directory: String? = nil
    ) throws -> Output {
        let process = Process()
        if executable.hasPrefix("/") {
            process.executableURL = URL(fileURLWithPath: executable)
            process.arguments = arguments
        } else {
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = [executable] + arguments
        }
        var env = ProcessInfo.processInfo.environment
        env["PATH"] = (env["PATH"] ?? "/usr/bin:/bin") + ":/usr/sbin:/sbin"
        for (key, value) in environment { env[key] = value }
        process.environment = env
        if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
        let outPath = NSTemporaryDirectory() + "mm-test-out-\(UUID().uuidString)"
        let errPath = NSTemporaryDirectory() + "mm-test-err-\(UUID().uuidString)"
        FileManager.default.createFile(atPath: outPath, contents: nil)
        FileManager.default.createFile(atPath: errPath, contents: nil)
        defer {
            try? FileManager.default.removeItem(atPath: outPath)
            try? FileManager.default.removeItem(atPath: errPath)
        }
        let out = try FileHandle(forWritingTo: URL(fileURLWithPath: outPath))
        let err = try FileHandle(forWritingTo: URL(fileURLWithPath: errPath))
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        try out.close()
        try err.close()
        return Output(
            status: process.terminationStatus,
            stdout: (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? "",
            stderr: (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
        )
    }

    /// Runs a program and requires success, recording its output on failure.
    @discardableResult
    static func check(_ executable: String, _ arguments: [String], environment: [String: String] = [:]) throws -> Output {
        let output = try run(executable, arguments, environment: environment)
        guard output.status == 0 else {
            Issue.record("\(executable) \(arguments.joined(separator: " ")) exited \(output.status):\n\(output.combined.suffix(4000))")
            throw TestFailure("\(executable) failed")
        }
        return output
    }

    /// The file list of slot A's initramfs on the ESP of `image` (extracted with mtools, listed with lsinitramfs).
    static func initramfsListing(image: String, espOffset: Int64) throws -> String {
        let dir = try scratch("initrd")
        try check("mcopy", ["-i", "\(image)@@\(espOffset)", "::/micromirror/a/initrd.img", dir + "/initrd.img"], environment: ["MTOOLS_SKIP_CHECK": "1"])
        return try check("lsinitramfs", [dir + "/initrd.img"]).stdout
    }

    /// Attaches `length` bytes of `file` at `offset` to a loop device, read-only.
    static func withLoopDevice<T>(_ file: String, offset: Int64 = 0, length: Int64? = nil, _ body: (String) throws -> T) throws -> T {
        var args = ["--find", "--show", "--read-only", "--offset", "\(offset)"]
        if let length { args += ["--sizelimit", "\(length)"] }
        let device = try check("losetup", args + [file]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        defer { _ = try? run("losetup", ["-d", device]) }
        return try body(device)
    }
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
