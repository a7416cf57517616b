import Foundation
import MicromirrorKit

/// Where the update stands, for `mm-node update status`, `/status` and scripts: the running image
/// and slot, what each slot's boot entry says, the updater's phase, download progress and recent steps.
public struct UpdateReport: Codable, Sendable {
    public struct Slot: Codable, Sendable {
        public var slot: String
        public var entry: String?
        /// What the slot's entry says it boots: its title and build number.
        public var title: String?
        public var buildNumber: Int64?
        /// Booted now.
        public var booted: Bool
        /// Its entry has no counter: it passed its health gate (or is the image as flashed).
        public var blessed: Bool
        public var triesLeft: Int?
    }

    public var running: ImageIdentity
    public var bootedSlot: String
    public var slots: [Slot]
    public var state: UpdateState

    public init(updater: Updater) {
        running = updater.running
        bootedSlot = updater.bootedSlot
        let entries = updater.boot.entries()
        slots = ["a", "b"].map { slot in
            let entry = entries.first { $0.name.slot == slot }
            let described = entry.map { updater.boot.describe($0.file) }
            return Slot(
                slot: slot, entry: entry?.file, title: described?.title, buildNumber: described?.buildNumber, booted: slot == updater.bootedSlot,
                blessed: entry.map { !$0.name.counting } ?? false, triesLeft: entry?.name.triesLeft
            )
        }
        state = updater.currentState()
    }

    public func json() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return try encoder.encode(self) + Data("\n".utf8)
    }

    public var text: String {
        var lines = ["running \(running.name) \(running.version) (build \(running.buildNumber), \(running.hardware)) from slot \(bootedSlot)"]
        for slot in slots {
            let holds = [slot.title, slot.buildNumber.map { "build \($0)" }].compactMap { $0 }.joined(separator: ", ")
            let what = slot.entry.map { "entry \($0)" + (slot.blessed ? ", blessed" : ", \(slot.triesLeft ?? 0) tries left") } ?? "no boot entry"
            lines.append("slot \(slot.slot): \(holds.isEmpty ? "" : holds + "; ")\(what)\(slot.booted ? " (booted)" : "")")
        }
        var phase = "update: \(state.phase.rawValue)"
        if let target = state.target { phase += ", build \(target.buildNumber) (\(target.version)) for slot \(target.slot)" }
        lines.append(phase)
        if !state.rolledBack.isEmpty { lines.append("rolled back here, never taken again: builds \(state.rolledBack.map(String.init).joined(separator: ", "))") }
        if let error = state.lastError { lines.append("last error: \(error)") }
        for event in state.events.suffix(5) {
            lines.append("  \(Date(timeIntervalSince1970: TimeInterval(event.time)).formatted(.iso8601)) \(event.message)")
        }
        return lines.joined(separator: "\n")
    }
}
