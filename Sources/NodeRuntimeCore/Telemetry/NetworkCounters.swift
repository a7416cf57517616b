import Foundation

/// One network interface's counters as `/proc/net/dev` gives them: bytes and packets since boot,
/// read straight from the kernel (no dstat, no CSV to break).
public struct NetworkCounters: Sendable, Equatable {
    public var interface: String
    public var receivedBytes: Int64
    public var receivedPackets: Int64
    public var receiveErrors: Int64
    public var receiveDrops: Int64
    public var sentBytes: Int64
    public var sentPackets: Int64
    public var sendErrors: Int64
    public var sendDrops: Int64

    /// Through /proc/self: services run with ProcSubset=pid, which hides /proc/net but not /proc/self/net.
    public static let procPath = "/proc/self/net/dev"

    public init(
        interface: String, receivedBytes: Int64, receivedPackets: Int64, receiveErrors: Int64, receiveDrops: Int64,
        sentBytes: Int64, sentPackets: Int64, sendErrors: Int64, sendDrops: Int64
    ) {
        self.interface = interface
        self.receivedBytes = receivedBytes
        self.receivedPackets = receivedPackets
        self.receiveErrors = receiveErrors
        self.receiveDrops = receiveDrops
        self.sentBytes = sentBytes
        self.sentPackets = sentPackets
        self.sendErrors = sendErrors
        self.sendDrops = sendDrops
    }

    /// Parses `/proc/net/dev` (two header lines, then `NAME: 16 numbers` per interface). The
    /// loopback interface is left out: it is not traffic anyone pays for.
    public static func parse(_ text: String) -> [NetworkCounters] {
        text.split(separator: "\n").compactMap { line in
            guard let colon = line.firstIndex(of: ":") else { return nil }
            let name = line[..<colon].trimmingCharacters(in: .whitespaces)
            let fields = line[line.index(after: colon)...].split(separator: " ", omittingEmptySubsequences: true).compactMap { Int64($0) }
            guard !name.isEmpty, name != "lo", fields.count >= 16 else { return nil }
            return NetworkCounters(
                interface: name, receivedBytes: fields[0], receivedPackets: fields[1], receiveErrors: fields[2], receiveDrops: fields[3],
                sentBytes: fields[8], sentPackets: fields[9], sendErrors: fields[10], sendDrops: fields[11]
            )
        }
    }

    /// The machine's interfaces now (none when the file cannot be read).
    public static func read(path: String = procPath) -> [NetworkCounters] {
        guard let data = FileManager.default.contents(atPath: path) else { return [] }
        return parse(String(decoding: data, as: UTF8.self))
    }
}
