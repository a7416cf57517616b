import Foundation
import Logging
import MicromirrorKit
import ServiceLifecycle

/// Keeps a node on its channel's release, on its own: polls the signed index every
/// `interval` (jittered by up to a tenth, so a fleet does not poll in the same second) and at once
/// when told (an MQTT message), downloads and installs what the decision allows, and reboots into it
/// in the maintenance window. At start it records what the last boot showed (a blessed slot, a
/// rollback), so a rollback is in the state, the journal and `/status` before anything else runs.
///
/// Generic over the clock: tests drive the polling with their own.
public final class UpdateService<C: Clock>: Service, Sendable where C.Duration == Duration, C.Instant: Sendable {
    private let updater: Updater
    private let channel: ChannelClient
    private let nodeID: String
    private let interval: Duration
    private let window: MaintenanceWindow
    private let clock: C
    private let logger: Logger
    private let reboot: @Sendable () async throws -> Void
    private let now: @Sendable () -> Date
    private let wake: AsyncStream<Trigger>
    private let wakeContinuation: AsyncStream<Trigger>.Continuation

    /// What started a check, as logged with it.
    public enum Trigger: String, Sendable {
        /// The first check after the service starts.
        case start
        /// The polling interval came round.
        case interval
        /// An MQTT message on the channel's update topic.
        case push
        /// Called directly (`mm-node update check`, tests).
        case manual
    }

    public init(
        updater: Updater, channel: ChannelClient, nodeID: String, interval: Duration, window: MaintenanceWindow, clock: C, logger: Logger,
        now: @escaping @Sendable () -> Date = { Date() }, reboot: @escaping @Sendable () async throws -> Void
    ) {
        self.updater = updater
        self.channel = channel
        self.nodeID = nodeID
        self.interval = interval
        self.window = window
        self.clock = clock
        self.logger = logger
        self.now = now
        self.reboot = reboot
        (wake, wakeContinuation) = AsyncStream.makeStream(of: Trigger.self, bufferingPolicy: .bufferingNewest(1))
    }

    /// Check the channel now (the NOC announced a release).
    public func checkNow() { wakeContinuation.yield(.push) }

    public func run() async throws {
        let state = updater.reconciledState()
        if let event = state.events.last { logger.notice("update state at start", metadata: ["phase": "\(state.phase.rawValue)", "last": "\(event.message)"]) }
        for build in state.rolledBack { logger.warning("this node rolled back a release before", metadata: ["build": "\(build)"]) }

        let wake = self.wake
        let clock = self.clock
        let interval = self.interval
        await withGracefulShutdownHandler {
            var iterator = wake.makeAsyncIterator()
            // The first check soon after start: a node that was down (or cut mid-install) catches
            // up within half a minute, spread so a rack powering up together does not poll at once.
            var (delay, due) = (Self.jitter(min(interval, .seconds(300))), Trigger.start)
            while !Task.isCancelled {
                let (wait, reason) = (delay, due)
                let timer = Task { [wakeContinuation] in
                    try? await clock.sleep(for: wait)
                    if !Task.isCancelled { wakeContinuation.yield(reason) }
                }
                guard let trigger = await iterator.next() else { timer.cancel(); break }
                timer.cancel()
                await checkOnce(trigger: trigger)
                (delay, due) = (interval + Self.jitter(interval), .interval)
            }
        } onGracefulShutdown: { [wakeContinuation] in
            wakeContinuation.finish()
        }
    }

    /// Reboots made for one installed target while the old slot keeps coming up with its entry
    /// untried: then the firmware does not boot that entry, and it is given up instead of looping.
    static var rebootsBeforeGivingUp: Int { 3 }

    /// One poll: fetch, decide, download, install; reboot if a slot is ready and the window is open.
    public func checkOnce(trigger: Trigger = .manual) async {
        do {
            let lock = try updater.lock()
            defer { withExtendedLifetime(lock) {} }
            var state = updater.reconciledState(holding: lock)
            if state.phase == .installed, let target = state.target, let problem = updater.bootFilesProblem(target) {
                logger.warning("the new slot's boot files are damaged; installing again", metadata: ["build": "\(target.buildNumber)", "problem": "\(problem)"])
                state.note("the boot files of build \(target.buildNumber) in slot \(target.slot) are damaged (\(problem)); it is installed again")
                state.phase = .idle
                state.target = nil
                try state.save(path: updater.statePath)
            }
            if state.phase != .installed {
                let index = try await channel.index(keyring: updater.keyring)
                let decision = UpdateDecision.decide(index: index, running: updater.running, nodeID: nodeID, rolledBack: Set(state.rolledBack))
                logger.info(
                    "update check",
                    metadata: ["channel": "\(index.channel)", "build": "\(index.buildNumber)", "decision": "\(decision.description)", "trigger": "\(trigger.rawValue)"]
                )
                guard decision == .install else { return }
                state.phase = .downloading
                state.target = UpdateState.Target(buildNumber: index.buildNumber, version: index.version, slot: updater.inactiveSlot)
                state.totalBytes = index.size
                state.note("downloading build \(index.buildNumber) (\(index.version))")
                try state.save(path: updater.statePath)
                var client = channel
                let statePath = updater.statePath
                client.progress = { done, total in
                    // The state file carries the progress in 5 % steps (status readers, not every chunk).
                    if done == total || done % max(total / 20, 1) < 64 << 10 {
                        var progress = UpdateState.load(path: statePath)
                        progress.downloadedBytes = done
                        try? progress.save(path: statePath)
                    }
                }
                let file = try await client.download(index, into: updater.staging, keyring: updater.keyring)
                try updater.install(bundle: file, index: index, downloaded: true)
                try? FileManager.default.removeItem(atPath: file)
                state = updater.currentState()
            }
            if state.phase == .installed, var target = state.target {
                guard window.contains(now()) else {
                    logger.info("update ready; waiting for the maintenance window", metadata: ["window": "\(window)"])
                    return
                }
                let reboots = target.reboots ?? 0
                if reboots >= Self.rebootsBeforeGivingUp {
                    logger.error("the firmware does not boot the new slot; giving up on this build", metadata: ["build": "\(target.buildNumber)", "reboots": "\(reboots)"])
                    try? updater.boot.retire(slot: target.slot)
                    state.note("slot \(target.slot) did not boot after \(reboots) reboots (its entry untried); build \(target.buildNumber) is given up and not taken again")
                    if !state.rolledBack.contains(target.buildNumber) { state.rolledBack.append(target.buildNumber) }
                    state.lastError = "build \(target.buildNumber) was never booted by the firmware"
                    state.phase = .idle
                    state.target = nil
                    try state.save(path: updater.statePath)
                    return
                }
                target.reboots = reboots + 1
                state.target = target
                try state.save(path: updater.statePath)
                logger.notice("rebooting into the new slot", metadata: ["build": "\(target.buildNumber)", "slot": "\(target.slot)"])
                try await reboot()
            }
        } catch {
            logger.error("update failed", metadata: ["error": "\(error)"])
            var state = UpdateState.load(path: updater.statePath)
            if state.phase == .downloading { state.phase = .idle; state.target = nil }
            state.lastError = "\(error)"
            state.note("update failed: \(error)")
            try? state.save(path: updater.statePath)
        }
    }

    static func jitter(_ interval: Duration) -> Duration {
        let tenth = interval / 10
        let (seconds, _) = tenth.components
        return seconds > 0 ? .seconds(Int64.random(in: 0...seconds)) : .zero
    }
}
