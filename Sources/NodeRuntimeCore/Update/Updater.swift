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

    /// The lock one updater holds while it downloads and installs (`update.lock` beside the state).
    public var lockPath: String { (statePath as NSString).deletingPathExtension + ".lock" }

    /// Takes the update lock: one download or install at a time, whether the update service or an
    /// `mm-node update apply` by hand. Throws, naming the holder, when another process has it.
    public func lock() throws -> FileLock {
        try FileManager.default.createDirectory(atPath: (lockPath as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        guard let lock = try FileLock.tryAcquire(lockPath) else {
            throw UpdateError("another update is under way (\(FileLock.holding(lockPath))); try again when it is done (mm-node update status)")
        }
        return lock
    }

    /// Whether some process (this one included) holds the update lock right now.
    func updateRunning() -> Bool {
        guard FileManager.default.fileExists(atPath: lockPath) else { return false }
        // Taken and dropped at once when free; a reader that cannot even open it assumes the worst.
        return (try? FileLock.tryAcquire(lockPath)) == nil
    }

    /// The state as kept, reconciled with what this boot shows. `holding` is this process's
    /// update lock when it has just taken it: whatever download or install the state names was
    /// then left by someone else and is over.
    public func currentState(holding: FileLock? = nil) -> UpdateState {
        var state = UpdateState.load(path: statePath)
        let entries = boot.entries()
        let abandoned = holding != nil || !updateRunning()
        state.reconcile(bootedSlot: bootedSlot, runningBuild: running.buildNumber, entries: entries.map(\.name), abandoned: abandoned)
        state.boot = UpdateState.Boot(slot: bootedSlot, buildNumber: running.buildNumber, version: running.version, entries: entries.map(\.file))
        return state
    }

    /// `currentState()`, kept on disk when the boot changed it (a rollback or a blessing is recorded
    /// the first time it is seen).
    public func reconciledState(holding: FileLock? = nil) -> UpdateState {
        let kept = UpdateState.load(path: statePath)
        let state = currentState(holding: holding)
        if state != kept {
            do { try state.save(path: statePath) } catch { logger.error("cannot keep the update state", metadata: ["error": "\(error)"]) }
        }
        return state
    }

    /// The SHA-256 of `slot`'s boot files as they are on the ESP now (after `BootInstaller.install`).
    func bootFileHashes(slot: String, entry: String) throws -> [String: String] {
        var hashes: [String: String] = [:]
        for path in [BootEntry.kernelPath(slot: slot), BootEntry.initrdPath(slot: slot), BootEntry.directory + "/" + entry] {
            let file = try RawFile.openForReading(esp + path)
            hashes[path] = try file.sha256(length: try file.size())
        }
        return hashes
    }

    /// What is wrong with the installed target's boot files on the ESP, or nil when each is as it was
    /// written (a power cut on a vfat ESP can leave an entry empty: the firmware then skips it).
    public func bootFilesProblem(_ target: UpdateState.Target) -> String? {
        guard let expected = target.bootFiles else { return nil }
        for (path, sha256) in expected.sorted(by: { $0.key < $1.key }) {
            guard let file = try? RawFile.openForReading(esp + path), let size = try? file.size() else { return "\(esp + path) is missing" }
            guard (try? file.sha256(length: size)) == sha256 else { return "\(esp + path) is not what was installed (\(size) bytes)" }
        }
        return nil
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
    /// ready to boot at the next reboot. The caller holds `lock()`.
    ///
    /// The whole bundle is checked before the slot is touched: against the signed channel `index`
    /// (its size and SHA-256) when it came from a channel, otherwise by a full verification pass
    /// (signature and every payload's hash). The writing pass then hashes again as it writes.
    /// `downloaded`: the bundle is what `ChannelClient.download` just returned, which checked it
    /// as it arrived (the index's SHA-256, the manifest's signature, every payload's SHA-256); only
    /// its size and signature are checked again, not a second full pass. (Should the file have
    /// changed since, the writing pass's payload hashes fail before any boot entry is written.)
    @discardableResult
    public func install(bundle: String, index: ChannelIndex? = nil, downloaded: Bool = false) throws -> UpdateState {
        var state = currentState()
        if let refusal = slotGuard() { throw UpdateError(refusal) }
        let allowDowngrade = index?.allowDowngrade ?? false
        let manifest: Manifest
        if let index {
            let file = try RawFile.openForReading(bundle)
            let size = try file.size()
            guard size == index.size else { throw UpdateError("\(bundle) is \(size) bytes, the signed channel index says \(index.size)") }
            if !downloaded {
                let digest = try file.sha256(length: size) { progress?("check bundle", $0, size) }
                guard digest == index.sha256 else { throw UpdateError("\(bundle): SHA-256 \(digest), the signed channel index says \(index.sha256)") }
            }
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
            state.target?.bootFiles = try bootFileHashes(slot: slot, entry: entry)
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
