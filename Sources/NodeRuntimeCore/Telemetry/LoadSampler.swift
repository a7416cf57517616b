import Foundation
import MicromirrorKit
import Synchronization
import SystemKit

/// Makes the node's compact load message: load averages from `sysinfo(2)` (the reporting service
/// sees only its own processes in /proc, not /proc/loadavg), established connections to the serving
/// ports from the kernel's TCP tables (/proc/self/net, for the same reason), and the uplinks' rates
/// since the previous sample.
public final class LoadSampler: Sendable {
    /// HTTP, HTTPS, rsync.
    public static let servingPorts: Set<Int> = [80, 443, 873]
    private let previous = Mutex<(time: Date, sent: Int64, received: Int64)?>(nil)
    private let tcpTables: [String]
    private let counters: @Sendable () -> [NetworkCounters]

    public init(tcpTables: [String] = ["/proc/self/net/tcp", "/proc/self/net/tcp6"], counters: @escaping @Sendable () -> [NetworkCounters] = { NetworkCounters.read() }) {
        self.tcpTables = tcpTables
        self.counters = counters
    }

    public func sample(now: Date = Date()) -> NodeLoad {
        let network = counters()
        let (sent, received) = (network.reduce(Int64(0)) { $0 + $1.sentBytes }, network.reduce(Int64(0)) { $0 + $1.receivedBytes })
        let rates = previous.withLock { last -> (Int64, Int64) in
            defer { last = (now, sent, received) }
            guard let last, now > last.time, sent >= last.sent, received >= last.received else { return (0, 0) }
            let seconds = now.timeIntervalSince(last.time)
            return (Int64(Double(sent - last.sent) * 8 / seconds), Int64(Double(received - last.received) * 8 / seconds))
        }
        let connections = tcpTables.reduce(0) { $0 + Self.established(table: (try? String(contentsOfFile: $1, encoding: .utf8)) ?? "", ports: Self.servingPorts) }
        return NodeLoad(time: now, load: LoadAverage.read(), connections: connections, sentBitsPerSecond: rates.0, receivedBitsPerSecond: rates.1)
    }

    /// Counts the ESTABLISHED (state 01) sockets of a `/proc/net/tcp{,6}` table whose local port is one of `ports`.
    public static func established(table: String, ports: Set<Int>) -> Int {
        table.split(separator: "\n").dropFirst().reduce(0) { count, line in
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count > 3, fields[3] == "01", let colon = fields[1].lastIndex(of: ":"),
                let port = Int(fields[1][fields[1].index(after: colon)...], radix: 16), ports.contains(port)
            else { return count }
            return count + 1
        }
    }
}
