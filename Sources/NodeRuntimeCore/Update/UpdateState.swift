import Foundation
import MicromirrorKit
import SystemKit

/// What the updater is doing and has done, kept on mm-data (`/srv/state/update.json`) so it
/// survives reboots and power cuts: the slot it wrote, the builds that failed their trial here,
/// the last steps. `mm-node update status`, `/status` and `/metrics` read it.
public struct UpdateState: Codable, Sendable, Equatable {
    public enum Phase: String, Codable, Sendable {
        /// Nothing under way.
        case idle
        case downloading
        /// Writing the inactive slot and its boot files.
        case installing
        /// The slot and its entry are in place; waiting for the reboot (maintenance window).
        case installed
        /// Booted into the new slot; its entry still counts tries until the health gate blesses it.
        case trial
    }

    /// The release being installed (or just installed).
    public struct Target: Codable, Sendable, Equatable {
        public var buildNumber: Int64
        public var version: String
        public var slot: String
        /// SHA-256 of the slot's kernel, initrd and entry on the ESP (paths relative to it), as
        /// installed: checked before each reboot into the slot, since a damaged entry is one the
        /// firmware skips, and rebooting for it again would loop.
        public var bootFiles: [String: String]?
        /// Reboots made to boot this target so far.
        public var reboots: Int?
        public init(buildNumber: Int64, version: String, slot: String) {
            self.buildNumber = buildNumber
            self.version = version
            self.slot = slot
        }
    }

    public struct Event: Codable, Sendable, Equatable {
        public var time: Int64
        public var message: String
    }

    /// What the node runs, as the updater saw it at its last look: the status page reads it from
    /// here (the unprivileged server can read neither the ESP nor the kernel command line).
    public struct Boot: Codable, Sendable, Equatable {
        public var slot: String
        public var buildNumber: Int64
        public var version: String
        /// Our boot entries on the ESP (file names: a `+N` counter means not blessed yet).
        public var entries: [String]
        public init(slot: String, buildNumber: Int64, version: String, entries: [String]) {
            self.slot = slot
            self.buildNumber = buildNumber
            self.version = version
            self.entries = entries
        }
    }

    public var boot: Boot?
    public var phase: Phase = .idle
    public var target: Target?
    public var downloadedBytes: Int64 = 0
    public var totalBytes: Int64 = 0
    public var lastError: String?
    /// Builds that were installed here and fell back: never taken again.
    public var rolledBack: [Int64] = []
    /// The most recent steps, newest last (bounded).
    public var events: [Event] = []

    public init() {}

    static let keptEvents = 50

    public mutating func note(_ message: String, now: Date = Date()) {
        events.append(Event(time: Int64(now.timeIntervalSince1970), message: message))
        if events.count > Self.keptEvents { events.removeFirst(events.count - Self.keptEvents) }
    }

    public static func load(path: String) -> UpdateState {
        guard let data = FileManager.default.contents(atPath: path), let state = try? JSONDecoder().decode(UpdateState.self, from: data) else {
            return UpdateState()
        }
        return state
    }

    public func save(path: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try AtomicFile.write(Array(try encoder.encode(self)) + [UInt8(ascii: "\n")], to: path)
    }

    /// After a boot: what the slot that came up and the boot entries say about the last install.
    /// - the target slot booted: on trial while its entry counts, done once blessed;
    /// - the other slot booted and the target's entry has no tries left: it fell back; the build
    ///   is never taken again;
    /// - an install cut short (power cut while downloading or writing, a killed `mm-node update
    ///   apply`): start again from idle (the download resumes from what is on mm-data). Only when
    ///   `abandoned`: no process holds the update lock, so the download or write it names is not
    ///   going on right now (a status reader must not cancel a running install).
    public mutating func reconcile(bootedSlot: String, runningBuild: Int64, entries: [BootEntry.Name], abandoned: Bool = true, now: Date = Date()) {
        guard let target else {
            phase = .idle
            return
        }
        let entry = entries.first { $0.slot == target.slot }
        switch phase {
        case .downloading, .installing:
            guard abandoned else { return }
            note("the install of build \(target.buildNumber) was interrupted; it starts again", now: now)
            phase = .idle
            self.target = nil
        case .installed, .trial, .idle:
            if bootedSlot == target.slot, runningBuild == target.buildNumber {
                if entry?.counting == true {
                    if phase != .trial { note("booted build \(target.buildNumber) in slot \(target.slot) on trial", now: now) }
                    phase = .trial
                } else {
                    note("build \(target.buildNumber) in slot \(target.slot) passed its health gate and is blessed", now: now)
                    phase = .idle
                    self.target = nil
                    lastError = nil
                }
            } else if entry?.exhausted == true {
                note("build \(target.buildNumber) did not come up healthy in slot \(target.slot); fell back to slot \(bootedSlot) (build \(runningBuild)); it will not be taken again", now: now)
                if !rolledBack.contains(target.buildNumber) { rolledBack.append(target.buildNumber) }
                lastError = "build \(target.buildNumber) rolled back"
                phase = .idle
                self.target = nil
            } else if entry == nil {
                note("the boot entry of build \(target.buildNumber) is gone; it starts again", now: now)
                phase = .idle
                self.target = nil
            }
            // Otherwise installed and waiting for its reboot: nothing changes.
        }
    }
}
