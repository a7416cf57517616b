import Foundation
import MicromirrorTestSupport

/// A real mosquitto broker on 127.0.0.1, for the push tests. `port` may be fixed so a test can
/// start the broker after a client is already trying to reach it.
final class MosquittoBroker: @unchecked Sendable {
    let port: Int
    let directory: String
    private var process: Process?

    init(port: Int? = nil) throws {
        directory = try ToolRun.scratchDirectory("mosquitto")
        self.port = try port ?? RsyncDaemon.freePort()
        try start()
    }

    func start() throws {
        let config = directory + "/mosquitto.conf"
        try "listener \(port) 127.0.0.1\nallow_anonymous true\npersistence false\n".write(toFile: config, atomically: true, encoding: .utf8)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["mosquitto", "-c", config]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        guard RsyncDaemon.waitForListener(port: port, while: process) else {
            process.terminate()
            throw TestError("mosquitto did not start on port \(port)")
        }
        self.process = process
    }

    /// Publishes `payload` on `topic` with QoS 1 through `mosquitto_pub`.
    func publish(_ topic: String, _ payload: String = "1") async throws {
        let result = try await ToolRun.run("mosquitto_pub", ["-h", "127.0.0.1", "-p", "\(port)", "-q", "1", "-t", topic, "-m", payload])
        guard result.status == 0 else { throw TestError("mosquitto_pub failed: \(result.combined)") }
    }

    func stop() {
        if let process, process.isRunning {
            // SIGKILL: processes started from the test runner may not get SIGTERM.
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        process = nil
    }

    deinit {
        stop()
        try? FileManager.default.removeItem(atPath: directory)
    }
}
