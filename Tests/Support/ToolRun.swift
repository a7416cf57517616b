import Foundation

/// What a program printed and how it ended.
public struct ToolOutput: Sendable {
    public var status: Int32
    public var stdout: String
    public var stderr: String
    public var combined: String { stdout + stderr }
}

/// Runs programs for the tests: PATH plus the sbin directories, output captured through files (no
/// pipe-buffer deadlocks), standard input closed.
public enum ToolRun {
    @discardableResult
    public static func run(
        _ executable: String, _ arguments: [String], directory: String? = nil, environment: [String: String] = [:]
    ) throws -> ToolOutput {
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
        env.merge(environment) { $1 }
        process.environment = env
        if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
        let outPath = NSTemporaryDirectory() + "mm-test-out-\(UUID().uuidString)"
        let errPath = NSTemporaryDirectory() + "mm-test-err-\(UUID().uuidString)"
        _ = FileManager.default.createFile(atPath: outPath, contents: nil)
        _ = FileManager.default.createFile(atPath: errPath, contents: nil)
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
        func read(_ path: String) -> String { String(decoding: (try? Data(contentsOf: URL(fileURLWithPath: path))) ?? Data(), as: UTF8.self) }
        return ToolOutput(status: process.terminationStatus, stdout: read(outPath), stderr: read(errPath))
    }

    /// Starts `arguments` (e.g. a bounded tcpdump) in the background, waits `settle` seconds for it to
    /// be ready, runs `body`, waits for the program to end and returns what it printed.
    public static func capture(_ arguments: [String], settle: Double = 1, during body: () throws -> Void) throws -> String {
        let path = NSTemporaryDirectory() + "mm-capture-\(UUID().uuidString)"
        _ = FileManager.default.createFile(atPath: path, contents: nil)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        process.standardOutput = handle
        process.standardError = handle
        process.standardInput = FileHandle.nullDevice
        try process.run()
        Thread.sleep(forTimeInterval: settle)
        try body()
        process.waitUntilExit()
        try handle.close()
        return String(decoding: (try? Data(contentsOf: URL(fileURLWithPath: path))) ?? Data(), as: UTF8.self)
    }

    /// A new empty directory under the system's temporary directory.
    public static func scratchDirectory(_ name: String) throws -> String {
        let path = NSTemporaryDirectory() + "mm-\(name)-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }
}
