import Foundation
import Logging
import MicromirrorKit
import SystemKit

/// Installs a verified release into the inactive slot, keeping one known-good slot at every moment.
///
/// Refused before any byte reaches a slot: a bundle whose manifest is not signed by the running
/// image's keyring, one for other hardware, one not newer than the running build (unless the
/// signed channel allows a downgrade), a build that fell back here before, and any install while
/// the running slot is itself still on trial (its fallback is the slot we would overwrite).
public struct Updater: Sendable {
    public var esp: String
    public var running: ImageIdentity
    public var bootedSlot: String
    public var keyring: Keyring
    public var statePath: String
    /// Where downloads and the new slot's kernel and initrd wait (on mm-data, never in RAM).
    public var staging: String
    /// The block device of a slot's root partition (found by PARTLABEL on a node).
    public var device: @Sendable (_ slot: String) throws -> String
    public var logger: Logger
    public var progress: (@Sendable (_ stage: String, _ done: Int64, _ total: Int64) -> Void)?

    public init(
        esp: String, running: ImageIdentity, bootedSlot: String, keyring: Keyring, statePath: String, staging: String,
        device: @escaping @Sendable (String) throws -> String, logger: Logger
    ) {
        self.esp = esp
        self.running = running
        self.bootedSlot = bootedSlot
        self.keyring = keyring
        self.statePath = statePath
        self.staging = staging
        self.device = device
        self.logger = logger
    }

    /// The slot that is not running.
    public var inactiveSlot: String { bootedSlot == "a" ? "b" : "a" }

    public var boot: BootInstaller { BootInstaller(esp: esp) }

    /// The state as kept, reconciled with what this boot shows.
    public func currentState() -> UpdateState {
        var state = UpdateState.load(path: statePath)
        let entries = boot.entries()
        state.reconcile(bootedSlot: bootedSlot, runningBuild: running.buildNumber, entries: entries.map(\.name))
        state.boot = UpdateState.Boot(slot: bootedSlot, buildNumber: running.buildNumber, version: running.version, entries: entries.map(\.file))
        return state
    }

    /// `currentState()`, kept on disk when the boot changed it (a rollback or a blessing is recorded
    /// the first time it is seen).
    public func reconciledState() -> UpdateState {
        let kept = UpdateState.load(path: statePath)
        let state = currentState()
        if state != kept {
            do { try state.save(path: statePath) } catch { logger.error("cannot keep the update state", metadata: ["error": "\(error)"]) }
        }
        return state
    }

    /// Why the inactive slot may not be written now, or nil when it may.
    public func slotGuard() -> String? {
        guard bootedSlot == "a" || bootedSlot == "b" else {
            return "the running system did not boot from a slot entry (mm.slot=\(bootedSlot)); not updating"
        }
        if let booted = boot.entry(slot: bootedSlot), booted.counting {
            return "slot \(bootedSlot) is still on trial (its entry counts tries); the other slot is its fallback and is not overwritten until this boot is blessed"
        }
        return nil
    }

    /// Checks `bundle` and installs it into the inactive slot; returns the state with the new slot
    /// ready to boot at the next reboot.
    ///
    /// The whole bundle is checked before the slot is touched: against the signed channel `index`
    /// (its size and SHA-256) when it came from a channel, otherwise by a full verification pass
    /// (signature and every payload's hash). The writing pass then hashes again as it writes.
    @discardableResult
    public func install(bundle: String, index: ChannelIndex? = nil) throws -> UpdateState {
        var state = currentState()
        if let refusal = slotGuard() { throw UpdateError(refusal) }
        let allowDowngrade = index?.allowDowngrade ?? false
        let manifest: Manifest
        if let index {
            let file = try RawFile.openForReading(bundle)
            let size = try file.size()
            guard size == index.size else { throw UpdateError("\(bundle) is \(size) bytes, the signed channel index says \(index.size)") }
            let digest = try file.sha256(length: size) { progress?("check bundle", $0, size) }
            guard digest == index.sha256 else { throw UpdateError("\(bundle): SHA-256 \(digest), the signed channel index says \(index.sha256)") }
            manifest = try Bundle.signedManifest(path: bundle, keyring: keyring)
        } else {
            manifest = try Bundle.verify(path: bundle, keyring: keyring)
        }
        if let index, index.buildNumber != manifest.buildNumber || index.hardware != manifest.hardware {
            throw UpdateError("\(bundle) is build \(manifest.buildNumber) for \(manifest.hardware); the channel index says build \(index.buildNumber) for \(index.hardware)")
        }
        guard manifest.hardware == running.hardware else {
            throw UpdateError("\(bundle) is built for \(manifest.hardware); this node is \(running.hardware)")
        }
        if manifest.buildNumber <= running.buildNumber, !allowDowngrade {
            throw UpdateError("\(bundle) is build \(manifest.buildNumber); the running build is \(running.buildNumber) (no downgrade without the channel's signed allowance)")
        }
        if state.rolledBack.contains(manifest.buildNumber) {
            throw UpdateError("build \(manifest.buildNumber) fell back on this node before; it is not installed again")
        }
        let slot = inactiveSlot
        let target = try device(slot)
        state.phase = .installing
        state.target = UpdateState.Target(buildNumber: manifest.buildNumber, version: manifest.version, slot: slot)
        state.note("installing build \(manifest.buildNumber) (\(manifest.version)) into slot \(slot) (\(target))")
        try state.save(path: statePath)
        logger.info("installing", metadata: ["build": "\(manifest.buildNumber)", "slot": "\(slot)", "device": "\(target)"])
        do {
            // Nothing may boot the slot while it is rewritten.
            try boot.retire(slot: slot)
            var writer = SlotWriter(device: target, staging: staging + "/slot-\(slot)")
            writer.progress = progress
            let written = try writer.write(bundle: bundle, keyring: keyring)
            let entry = try boot.install(slot: slot, kernel: written.kernel, initrd: written.initrd, manifest: written.manifest)
            state.phase = .installed
            state.lastError = nil
            state.note("slot \(slot) holds build \(manifest.buildNumber), verified on the disk; boot entry \(entry) added")
            try state.save(path: statePath)
            logger.info("installed", metadata: ["build": "\(manifest.buildNumber)", "slot": "\(slot)", "entry": "\(entry)"])
            return state
        } catch {
            state.phase = .idle
            state.target = nil
            state.lastError = "\(error)"
            state.note("the install of build \(manifest.buildNumber) failed: \(error)")
            try? state.save(path: statePath)
            throw error
        }
    }
}
