import Foundation
import Logging
import MicromirrorKit
import SystemKit

/// The running node as the updater sees it: which image and slot booted, which keys it trusts,
/// where the ESP and the state are, how a slot's device is found. `live()` reads a real node;
/// tests point each path elsewhere.
public struct UpdateEnvironment: Sendable {
    public var identity: String = NodePaths.imageIdentity
    public var cmdline: String = "/proc/cmdline"
    public var keyring: String = NodePaths.keyring
    public var esp: String = NodePaths.esp
    public var paths: NodePaths = .standard
    /// Who this node is, for its place in rollouts.
    public var machineID: String = "/etc/machine-id"
    /// Slot devices given outright (benchmarks, tests), instead of the partition labelled `mm-root-SLOT`.
    public var slotDevices: [String: String] = [:]

    public init() {}

    /// The updater for this node.
    public func updater(logger: Logger) throws -> Updater {
        let running = try ImageIdentity.load(path: identity)
        let keys = try Keyring.load(directory: keyring)
        let given = slotDevices
        return Updater(
            esp: esp, running: running, bootedSlot: KernelCommandLine.read(path: cmdline).slot, keyring: keys, statePath: paths.updateState,
            staging: paths.updateStaging,
            device: { slot in
                if let device = given[slot] { return device }
                let label = DiskLayout.Label.root(slot: slot)
                guard let device = BlockProbe.device(partitionLabel: label) else {
                    throw UpdateError("no partition labelled \(label) on this machine")
                }
                return device
            }, logger: logger
        )
    }

    /// The node's stable identity for rollouts.
    public func nodeID() -> String {
        (try? String(contentsOfFile: machineID, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "unknown"
    }
}
