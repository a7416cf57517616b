import Foundation
import NIOCore
import NIOEmbedded
@testable import NodeRuntimeCore
import Testing

/// The connection handler on NIO's EmbeddedChannel: what it answers, when it closes, and time
/// moved by hand (`advanceTime`) instead of waited for.
@Suite("Connection handler on EmbeddedChannel", .serialized)
final class MirrorHTTPHandlerTests {
    let root = NSTemporaryDirectory() + "mm-handler-\(UUID().uuidString)"
    let shared: ServeContext

    init() throws {
        try FileManager.default.createDirectory(atPath: root + "/ubuntu/dists", withIntermediateDirectories: true)
        try "Origin: Ubuntu\n".write(toFile: root + "/ubuntu/dists/InRelease", atomically: true, encoding: .utf8)
        var configuration = ServeConfiguration(root: root, listen: [])
        configuration.keepAliveTimeout = .seconds(2)
        configuration.requestHeadTimeout = .seconds(10)
        shared = ServeContext(configuration: configuration, resolver: try MirrorFileResolver(root: root), accessLog: nil, metrics: ServeMetrics())
    }

    deinit { try? FileManager.default.removeItem(atPath: root) }

    /// A connected channel from `client` with a fresh handler.
    func connect(_ client: String, limiter: ConnectionLimiter = ConnectionLimiter(maxPerAddress: 16, maxTotal: 100)) throws -> EmbeddedChannel {
        let loop = EmbeddedEventLoop()
        let handler = MirrorHTTPHandler(context: shared, limiter: limiter, clock: LoopClock.current, eventLoop: loop)
        let channel = EmbeddedChannel(handler: handler, loop: loop)
        let address = try SocketAddress(ipAddress: client, port: 40000)
        channel.remoteAddress = address
        try channel.connect(to: address).wait()
        return channel
    }

    /// Everything written to the client so far, as text.
    func written(_ channel: EmbeddedChannel) throws -> String {
        var text = ""
        while let data = try channel.readOutbound(as: IOData.self) {
            guard case .byteBuffer(let buffer) = data else { throw TestError("unexpected file region in a small answer") }
            text += String(buffer: buffer)
        }
        return text
    }

    func send(_ channel: EmbeddedChannel, _ text: String) throws {
        try channel.writeInbound(ByteBuffer(string: text))
        channel.pipeline.fireChannelReadComplete()
    }

    @Test("a 404 keeps the connection for the next request; a malformed request closes it")
    func notFoundKeepsAlive() throws {
        let channel = try connect("127.0.0.1")
        try send(channel, "GET /ubuntu/missing HTTP/1.1\r\nHost: x\r\n\r\n")
        let notFound = try written(channel)
        #expect(notFound.hasPrefix("HTTP/1.1 404") && notFound.contains("Connection: keep-alive"), "\(notFound)")
        #expect(channel.isActive, "a 404 must not close the connection")
        try send(channel, "GET /ubuntu/dists/InRelease HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(try written(channel).hasSuffix("Origin: Ubuntu\n"))
        try send(channel, "GET /ubuntu/%2e%2e/x HTTP/1.1\r\nHost: x\r\n\r\n")
        let bad = try written(channel)
        #expect(bad.hasPrefix("HTTP/1.1 400") && bad.contains("Connection: close"), "\(bad)")
        #expect(!channel.isActive, "a malformed request closes the connection")
    }

    @Test("the parser's refusals close the connection")
    func parserRefusalCloses() throws {
        let channel = try connect("127.0.0.1")
        try send(channel, "GET / HTTP/1.1\r\nHost: x\r\nX-Big: \(String(repeating: "b", count: 20000))\r\n\r\n")
        #expect(try written(channel).hasPrefix("HTTP/1.1 431"))
        #expect(!channel.isActive)
    }

    @Test("an idle connection closes when the keep-alive timeout has passed on the loop's clock, not before")
    func keepAliveOnLoopTime() throws {
        let channel = try connect("127.0.0.1")
        try send(channel, "GET /ubuntu/dists/InRelease HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(try written(channel).hasPrefix("HTTP/1.1 200"))
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(1999))
        #expect(channel.isActive)
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(1))
        #expect(!channel.isActive, "idle for the keep-alive timeout: closed")
    }

    @Test("a head trickling in is cut at the head timeout even though bytes keep coming")
    func slowHead() throws {
        let channel = try connect("127.0.0.1")
        try send(channel, "GET / HTTP/1.1\r\n")
        for _ in 0..<9 {
            channel.embeddedEventLoop.advanceTime(by: .seconds(1))
            #expect(channel.isActive)
            try send(channel, "X-Slow: a\r\n")
        }
        channel.embeddedEventLoop.advanceTime(by: .seconds(1))
        #expect(!channel.isActive, "the head did not arrive within 10 s")
    }

    @Test("the connection limit counts an IPv6 /64 as one client and IPv4-mapped addresses as IPv4")
    func limitKeys() throws {
        let limiter = ConnectionLimiter(maxPerAddress: 1, maxTotal: 100)
        let first = try connect("2001:db8:1:2::1", limiter: limiter)
        #expect(first.isActive)
        let sameNetwork = try connect("2001:db8:1:2:ffff::9", limiter: limiter)
        let refused = try written(sameNetwork)
        #expect(refused.hasPrefix("HTTP/1.1 503") && refused.contains("too many connections from 2001:db8:1:2::/64"), "\(refused)")
        let otherNetwork = try connect("2001:db8:1:3::1", limiter: limiter)
        #expect(try written(otherNetwork).isEmpty && otherNetwork.isActive)

        let v4 = try connect("198.51.100.1", limiter: limiter)
        #expect(v4.isActive)
        let mapped = try connect("::ffff:198.51.100.1", limiter: limiter)
        #expect(try written(mapped).contains("too many connections from 198.51.100.1;"))
    }

    @Test("client addresses: IPv4-mapped as IPv4, IPv6 keyed by a configurable prefix")
    func clientAddresses() throws {
        let mapped = ClientAddress(try SocketAddress(ipAddress: "::ffff:198.51.100.1", port: 1), ipv6PrefixLength: 64)
        #expect(mapped == ClientAddress(text: "198.51.100.1", limitKey: "198.51.100.1"))
        let v6 = ClientAddress(try SocketAddress(ipAddress: "2001:db8:aaaa:bbbb:cccc::1", port: 1), ipv6PrefixLength: 48)
        #expect(v6 == ClientAddress(text: "2001:db8:aaaa:bbbb:cccc::1", limitKey: "2001:db8:aaaa::/48"))
        let odd = ClientAddress(try SocketAddress(ipAddress: "2001:db8:aaff::1", port: 1), ipv6PrefixLength: 36)
        #expect(odd.limitKey == "2001:db8:a000::/36")
        let host = ClientAddress(try SocketAddress(ipAddress: "2001:db8::1", port: 1), ipv6PrefixLength: 128)
        #expect(host.limitKey == "2001:db8::1/128")
    }
}
