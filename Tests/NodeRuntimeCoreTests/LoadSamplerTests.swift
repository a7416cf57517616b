import Foundation
import MicromirrorKit
import NodeRuntimeCore
import Synchronization
import SystemKit
import Testing

/// The compact load message: connections counted from the kernel's TCP tables, rates from the
/// interface counters between two samples, the load averages from the kernel.
@Suite("Load message")
struct LoadSamplerTests {
    static let table = """
          sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
           0: 00000000:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 177 1 0 100 0 0 10 0
           1: 0A00020A:0050 0100020A:C350 01 00000000:00000000 00:00000000 00000000   850        0 901 1 0 20 4 30 10 -1
           2: 0A00020A:0050 0200020A:C351 01 00000000:00000000 00:00000000 00000000   850        0 902 1 0 20 4 30 10 -1
           3: 0A00020A:0369 0300020A:C352 01 00000000:00000000 00:00000000 00000000   853        0 903 1 0 20 4 30 10 -1
           4: 0A00020A:0050 0400020A:C353 06 00000000:00000000 00:00000000 00000000     0        0 0 3 0
           5: 0A00020A:C354 0100020A:0369 01 00000000:00000000 00:00000000 00000000   852        0 905 1 0 20 4 30 10 -1
        """

    static func counters(received: Int64, sent: Int64) -> NetworkCounters {
        NetworkCounters(
            interface: "eth0", receivedBytes: received, receivedPackets: 0, receiveErrors: 0, receiveDrops: 0, sentBytes: sent, sentPackets: 0, sendErrors: 0, sendDrops: 0
        )
    }

    @Test("established connections to 80, 443 and 873 count; listeners, TIME_WAIT and the node's own outgoing rsync do not")
    func connections() {
        #expect(LoadSampler.established(table: Self.table, ports: LoadSampler.servingPorts) == 3)
        #expect(LoadSampler.established(table: Self.table, ports: [873]) == 1)
        #expect(LoadSampler.established(table: "", ports: [80]) == 0)
    }

    @Test("rates are the counters' change over the time between samples; the first sample and a counter reset give 0")
    func rates() throws {
        let counters = Mutex<[NetworkCounters]>([Self.counters(received: 1_000, sent: 10_000)])
        let dir = try FileManager.default.url(for: .itemReplacementDirectory, in: .userDomainMask, appropriateFor: URL(fileURLWithPath: NSTemporaryDirectory()), create: true).path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Self.table.write(toFile: dir + "/tcp", atomically: true, encoding: .utf8)
        let sampler = LoadSampler(tcpTables: [dir + "/tcp", dir + "/missing"]) { counters.withLock { $0 } }
        let start = Date(timeIntervalSince1970: 1_800_000_000)
        let first = sampler.sample(now: start)
        #expect(first.sentBitsPerSecond == 0 && first.receivedBitsPerSecond == 0 && first.connections == 3)
        counters.withLock { $0 = [Self.counters(received: 126_000, sent: 12_510_000)] }
        let second = sampler.sample(now: start + 10)
        #expect(second.sentBitsPerSecond == 10_000_000 && second.receivedBitsPerSecond == 100_000, "\(second)")
        counters.withLock { $0 = [Self.counters(received: 5, sent: 5)] }
        #expect(sampler.sample(now: start + 20).sentBitsPerSecond == 0, "a reset (reboot, driver reload) is no negative rate")
        let load = LoadAverage.read()
        #expect(load.count == 3 && load.allSatisfy { $0 >= 0 }, "\(load)")
        let message = try NodeLoad.parse(try second.json())
        #expect(message == second && message.summary.contains("10.0 Mbit/s out"), "\(message.summary)")
    }
}
