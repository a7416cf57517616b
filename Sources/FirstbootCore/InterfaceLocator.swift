import Foundation
import MicromirrorKit

/// Finds the uplink NIC in sysfs: by MAC, or the first wired Ethernet NIC by name.
public struct InterfaceLocator {
    public var sysfsNet: String

    public init(sysfsNet: String = "/sys/class/net") { self.sysfsNet = sysfsNet }

    public struct Interface: Sendable, Equatable {
        public var name: String
        public var mac: String
    }

    public func all() -> [Interface] {
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: sysfsNet)) ?? []).sorted()
        return names.compactMap { name in
            guard let mac = read("\(name)/address") else { return nil }
            return Interface(name: name, mac: mac.lowercased())
        }
    }

    /// The interface for `match`, or nil when none fits.
    public func find(_ match: NodeConfig.InterfaceMatch) -> Interface? {
        switch match {
        case .mac(let mac):
            return all().first { $0.mac == mac.lowercased() }
        case .firstWired:
            // Ethernet (type 1), backed by a device (not veth/bridge/tun), not wireless.
            return all().first { interface in
                read("\(interface.name)/type") == "1"
                    && FileManager.default.fileExists(atPath: "\(sysfsNet)/\(interface.name)/device")
                    && !FileManager.default.fileExists(atPath: "\(sysfsNet)/\(interface.name)/wireless")
                    && !FileManager.default.fileExists(atPath: "\(sysfsNet)/\(interface.name)/phy80211")
            }
        }
    }

    private func read(_ relative: String) -> String? {
        (try? String(contentsOfFile: "\(sysfsNet)/\(relative)", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
