import Foundation
import Logging
import NIOCore
import NIOPosix
import NodeRuntimeCore
import ServiceLifecycle
import MicromirrorTestSupport
import Testing

/// A mirror server running in-process on 127.0.0.1 and ::1, port 0, over a scratch root.
final class LiveServer: @unchecked Sendable {
    let root: String
    let port: Int
    let accessLog: String
    private let group: ServiceGroup
    private let task: Task<Void, any Error>

    static func start(configure: (inout ServeConfiguration) -> Void = { _ in }, populate: (String) throws -> Void) async throws -> LiveServer {
        let root = NSTemporaryDirectory() + "mm-serve-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        try populate(root)
        let log = root + ".access.log"
        var configuration = ServeConfiguration(root: root, listen: [("127.0.0.1", 0)])
        configuration.accessLogPath = log
        configuration.shutdownGrace = .seconds(2)
        configure(&configuration)
        let (stream, continuation) = AsyncStream<[SocketAddress]>.makeStream()
        let server = MirrorServer(configuration: configuration, logger: Logger(label: "test")) { continuation.yield($0) }
        let group = ServiceGroup(services: [server], logger: Logger(label: "test"))
        let task = Task { try await group.run() }
        var iterator = stream.makeAsyncIterator()
        guard let bound = await iterator.next(), let port = bound.first?.port else { throw TestError("server did not bind") }
        return LiveServer(root: root, ports: bound.compactMap(\.port), accessLog: log, group: group, task: task)
    }

    /// Every bound port, in listen order.
    let ports: [Int]

    private init(root: String, ports: [Int], accessLog: String, group: ServiceGroup, task: Task<Void, any Error>) {
        self.root = root
        self.port = ports[0]
        self.ports = ports
        self.accessLog = accessLog
        self.group = group
        self.task = task
    }

    var base: String { "http://127.0.0.1:\(port)" }

    /// The access log once `predicate` holds, or as it is after 60 s: lines reach the file within a
    /// second of their request (the bound is generous for a suite that may hold every thread).
    func accessLogText(until predicate: (String) -> Bool) async throws -> String {
        func text() -> String { (try? String(contentsOfFile: accessLog, encoding: .utf8)) ?? "" }
        _ = try await eventually(seconds: 60) { predicate(text()) }
        return text()
    }

    /// Cancels the server's task (as a failing sibling service would) and waits for it to end.
    func cancel() async {
        task.cancel()
        _ = try? await task.value
        try? FileManager.default.removeItem(atPath: root)
        try? FileManager.default.removeItem(atPath: accessLog)
    }

    /// Shuts the server down and returns its access log as it was left.
    @discardableResult
    func stop() async -> String {
        await group.triggerGracefulShutdown()
        _ = try? await task.value
        let log = (try? String(contentsOfFile: accessLog, encoding: .utf8)) ?? ""
        try? FileManager.default.removeItem(atPath: root)
        try? FileManager.default.removeItem(atPath: accessLog)
        return log
    }
}

/// Polls `condition` every 100 ms until it holds or `seconds` pass. It returns as soon as the
/// condition holds; the bound leaves room for image builds loading both cores meanwhile (tools are
/// waited on off the cooperative pool, so they no longer hold its threads).
func eventually(seconds: Int = 120, _ condition: () async -> Bool) async throws -> Bool {
    let deadline = ContinuousClock.now + .seconds(seconds)
    while ContinuousClock.now < deadline {
        if await condition() { return true }
        try await Task.sleep(for: .milliseconds(100))
    }
    return await condition()
}

struct TestError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

/// Runs a program to completion.
func run(_ tool: String, _ arguments: [String], directory: String? = nil, environment: [String: String] = [:]) async throws -> (status: Int32, output: String) {
    let result = try await ToolRun.run(tool, arguments, directory: directory, environment: environment)
    return (result.status, result.combined)
}

/// Sends raw bytes on a fresh TCP connection and returns everything the server answers until it
/// closes or `timeout` passes.
/// `readAfter` waits before reading anything (a client that pipelines without reading); `limit`
/// bounds what is collected.
func rawExchange(
    port: Int, _ request: [UInt8], host: String = "127.0.0.1", timeout: Double = 3, readAfter: Duration = .zero, limit: Int = 1 << 20
) throws -> String {
    let fd = socket(host.contains(":") ? AF_INET6 : AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw TestError("socket failed") }
    defer { close(fd) }
    var tv = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - Double(Int(timeout))) * 1_000_000))
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    inet_pton(AF_INET, host, &address.sin_addr)
    let connected = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
    guard connected == 0 else { throw TestError("connect failed") }
    _ = request.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    if readAfter > .zero { Thread.sleep(forTimeInterval: Double(readAfter.components.seconds) + Double(readAfter.components.attoseconds) / 1e18) }
    var response: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = recv(fd, &buffer, buffer.count, 0)
        if n <= 0 { break }
        response += buffer[0..<n]
        if response.count > limit { break }
    }
    return String(decoding: response, as: UTF8.self)
}
