import Foundation
import MicromirrorTestSupport

/// A real nginx on 127.0.0.1 as the origin of a project in cache mode: serves `www/`, logs every
/// request (`METHOD URI STATUS BYTES USER-AGENT`) so a test can count what reached it, sends
/// `slow/` at `slowRate`, and can be killed mid-transfer and started again on the same port.
///
/// One process (`master_process off`), so SIGKILL stops every transfer at once.
final class OriginServer: @unchecked Sendable {
    let directory: String
    /// The tree served: `http://127.0.0.1:PORT/X` is `www/X`.
    var www: String { directory + "/www" }
    private(set) var port = 0
    private var process: Process?
    private let slowRate: String

    init(slowRate: String = "1m") throws {
        directory = try ToolRun.scratchDirectory("origin")
        self.slowRate = slowRate
        for sub in ["www", "tmp"] { try FileManager.default.createDirectory(atPath: directory + "/" + sub, withIntermediateDirectories: true) }
        try start()
    }

    /// The project's base URL (its `origin:`).
    func origin(_ project: String) -> String { "http://127.0.0.1:\(port)/\(project)/" }

    /// Starts nginx (again, on the same port when it ran before).
    func start() throws {
        var lastError = ""
        for _ in 0..<5 {
            let candidate = port != 0 ? port : try RsyncDaemon.freePort()
            let d = directory
            let config = """
                master_process off;
                daemon off;
                worker_processes 1;
                pid \(d)/nginx.pid;
                error_log \(d)/error.log;
                events { worker_connections 1024; }
                http {
                    log_format counted '$request_method $uri $status $body_bytes_sent $http_user_agent';
                    access_log \(d)/access.log counted;
                    client_body_temp_path \(d)/tmp/body; proxy_temp_path \(d)/tmp/proxy; fastcgi_temp_path \(d)/tmp/fastcgi;
                    uwsgi_temp_path \(d)/tmp/uwsgi; scgi_temp_path \(d)/tmp/scgi;
                    default_type application/octet-stream;
                    server {
                        listen 127.0.0.1:\(candidate);
                        root \(d)/www;
                        location ~ /slow/ { limit_rate \(slowRate); }
                        location ~ /private/ { return 403; }
                    }
                }

                """
            try config.write(toFile: d + "/nginx.conf", atomically: true, encoding: .utf8)
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/sbin/nginx")
            process.arguments = ["-c", d + "/nginx.conf", "-e", d + "/error.log"]
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            if RsyncDaemon.waitForListener(port: candidate, while: process) {
                port = candidate
                self.process = process
                return
            }
            Foundation.kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            lastError = (try? String(contentsOfFile: d + "/error.log", encoding: .utf8)) ?? ""
            if port != 0 { Thread.sleep(forTimeInterval: 0.2) }
        }
        throw TestError("nginx (the origin) did not start: \(lastError)")
    }

    /// Kills nginx at once, whatever it is sending.
    func kill() {
        guard let process, process.isRunning else { return }
        Foundation.kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        self.process = nil
    }

    /// Writes `bytes` at `path` below `www/` (directories made), with `modified` as its mtime.
    func put(_ path: String, _ bytes: [UInt8], modified: Date? = nil) throws {
        let full = www + "/" + path
        try FileManager.default.createDirectory(atPath: (full as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try Data(bytes).write(to: URL(fileURLWithPath: full))
        if let modified { try FileManager.default.setAttributes([.modificationDate: modified], ofItemAtPath: full) }
    }

    /// The logged requests for `uri` (every one, whatever its status).
    func requests(_ uri: String) -> [(status: Int, bytes: Int, agent: String)] {
        let log = (try? String(contentsOfFile: directory + "/access.log", encoding: .utf8)) ?? ""
        return log.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: " ", maxSplits: 4)
            guard fields.count >= 4, fields[1] == uri, let status = Int(fields[2]), let bytes = Int(fields[3]) else { return nil }
            return (status, bytes, fields.count > 4 ? String(fields[4]) : "")
        }
    }

    func stop() {
        kill()
        try? FileManager.default.removeItem(atPath: directory)
    }

    deinit { stop() }
}

/// Deterministic bytes for test files (a file and its copy compare equal, two files differ).
func patternBytes(_ count: Int, seed: UInt8) -> [UInt8] {
    var state = UInt32(seed) &* 2_654_435_761 | 1
    return (0..<count).map { _ in
        state ^= state << 13
        state ^= state >> 17
        state ^= state << 5
        return UInt8(truncatingIfNeeded: state)
    }
}
