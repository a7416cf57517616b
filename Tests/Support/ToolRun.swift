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
///
/// Waiting is asynchronous (the process's termination handler resumes the caller), so a test that
/// runs a long tool never holds one of Swift concurrency's few cooperative threads: on a 2-core
/// machine two blocked waits would stall every other async test in the process.
public enum ToolRun {
    @discardableResult
    public static func run(
        _ executable: String, _ arguments: [String], directory: String? = nil, environment: [String: String] = [:]
    ) async throws -> ToolOutput {
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
        try await exit(of: process)
        try out.close()
        try err.close()
        func read(_ path: String) -> String { String(decoding: (try? Data(contentsOf: URL(fileURLWithPath: path))) ?? Data(), as: UTF8.self) }
        return ToolOutput(status: process.terminationStatus, stdout: read(outPath), stderr: read(errPath))
    }

    /// Starts `arguments` (e.g. a bounded tcpdump) in the background, waits `settle` seconds for it to
    /// be ready, runs `body`, waits for the program to end and returns what it printed.
    public static func capture(_ arguments: [String], settle: Double = 1, during body: () async throws -> Void) async throws -> String {
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
        let exited = Task { try await exit(of: process) }
        try await Task.sleep(for: .milliseconds(Int(settle * 1000)))
        try await body()
        try await exited.value
        try handle.close()
        return String(decoding: (try? Data(contentsOf: URL(fileURLWithPath: path))) ?? Data(), as: UTF8.self)
    }

    /// Runs a quick clean-up command (deleting a namespace, detaching a loop device) synchronously,
    /// for `defer` blocks, where `await` is not allowed; its outcome is ignored.
    public static func cleanUp(_ executable: String, _ arguments: [String]) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [executable] + arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        process.standardInput = FileHandle.nullDevice
        var env = ProcessInfo.processInfo.environment
        env["PATH"] = (env["PATH"] ?? "/usr/bin:/bin") + ":/usr/sbin:/sbin"
        process.environment = env
        guard (try? process.run()) != nil else { return }
        process.waitUntilExit()
    }

    /// Starts `process` and returns once it has exited, without blocking a thread while it runs.
    public static func exit(of process: Process) async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            process.terminationHandler = { _ in continuation.resume() }
            do {
                try process.run()
            } catch {
                process.terminationHandler = nil
                continuation.resume(throwing: error)
            }
        }
    }

    /// A new empty directory under the system's temporary directory.
    public static func scratchDirectory(_ name: String) throws -> String {
        let path = NSTemporaryDirectory() + "mm-\(name)-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }
}
