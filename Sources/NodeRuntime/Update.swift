import ArgumentParser
import Foundation
import Logging
import MicromirrorKit
import NodeRuntimeCore
import SystemKit

struct Update: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Over-the-air updates: check the channel, install a release into the inactive slot, show where things stand.",
        subcommands: [Check.self, Apply.self, UpdateStatus.self]
    )

    /// Where the node's files are; tests point them at a scratch node.
    struct Locations: ParsableArguments {
        @Option(help: "Node file.") var config = NodeConfig.defaultPath
        @Option(help: "Mounted ESP.") var esp = NodePaths.esp
        @Option(help: "Where mm-data is mounted (state and downloads).") var data = NodePaths.standard.data
        @Option(help: "Directory of trusted public keys.") var keyring = NodePaths.keyring
        @Option(help: "Image identity of the running system.") var identity = NodePaths.imageIdentity
        @Option(help: "Kernel command line to read the booted slot from.") var cmdline = "/proc/cmdline"
        @Option(help: "File holding this node's machine id (its place in rollouts).") var machineID = "/etc/machine-id"
        @Option(help: "SLOT=DEVICE: write that slot to DEVICE instead of the partition labelled mm-root-SLOT (benchmarks, tests; repeatable).")
        var slotDevice: [String] = []

        func validate() throws {
            for pair in slotDevice {
                let parts = pair.split(separator: "=", maxSplits: 1)
                guard parts.count == 2, ["a", "b"].contains(parts[0]), parts[1].hasPrefix("/") else {
                    throw ValidationError("--slot-device \(pair): expected a=/dev/DEVICE or b=/dev/DEVICE")
                }
            }
        }

        var environment: UpdateEnvironment {
            var environment = UpdateEnvironment()
            environment.identity = identity
            environment.cmdline = cmdline
            environment.keyring = keyring
            environment.esp = esp
            environment.paths = NodePaths(data: data)
            environment.machineID = machineID
            for pair in slotDevice {
                let parts = pair.split(separator: "=", maxSplits: 1).map(String.init)
                environment.slotDevices[parts[0]] = parts[1]
            }
            return environment
        }

        func channel(logger: Logger) throws -> ChannelClient {
            let node = try NodeConfig.load(path: config)
            return ChannelClient(indexURL: node.update.indexURL(upstream: node.upstream), logger: logger)
        }
    }

    static func logger() -> Logger {
        LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }
        return Logger(label: "mm-node.update")
    }

    struct Check: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Fetch the channel's signed index and say whether this node would take it.")
        @OptionGroup var locations: Locations

        func run() async throws {
            let logger = Update.logger()
            let updater = try locations.environment.updater(logger: logger)
            let channel = try locations.channel(logger: logger)
            let index = try await channel.index(keyring: updater.keyring)
            let decision = UpdateDecision.decide(
                index: index, running: updater.running, nodeID: locations.environment.nodeID(), rolledBack: Set(updater.currentState().rolledBack)
            )
            print("channel \(index.channel): build \(index.buildNumber) (\(index.version)) at \(index.rollout) %; running build \(updater.running.buildNumber): \(decision.description)")
            if decision != .install { throw ExitCode(decision == .upToDate ? 0 : 3) }
        }
    }

    struct Apply: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Install a release into the inactive slot: from the channel, or a bundle file.")
        @OptionGroup var locations: Locations
        @Option(help: "Install this bundle file instead of the channel's release.") var bundle: String?
        @Option(help: "Reboot into it: now, window (the node's maintenance window; wait for it), or no.") var reboot = "no"

        func validate() throws {
            guard ["now", "window", "no"].contains(reboot) else { throw ValidationError("--reboot: expected now, window or no") }
        }

        func run() async throws {
            let logger = Update.logger()
            var updater = try locations.environment.updater(logger: logger)
            updater.progress = Progress.printer()
            // Held while downloading and writing, not while waiting for a reboot.
            var lock: FileLock? = try updater.lock()
            _ = updater.reconciledState(holding: lock)
            if let bundle {
                try updater.install(bundle: bundle)
            } else {
                let channel = try locations.channel(logger: logger)
                let index = try await channel.index(keyring: updater.keyring)
                let decision = UpdateDecision.decide(
                    index: index, running: updater.running, nodeID: locations.environment.nodeID(), rolledBack: Set(updater.currentState().rolledBack)
                )
                guard decision == .install else {
                    print("not installing build \(index.buildNumber): \(decision.description)")
                    throw ExitCode(decision == .upToDate ? 0 : 3)
                }
                var client = channel
                client.progress = { done, total in Progress.printer()("download", done, total) }
                let file = try await client.download(index, into: locations.environment.paths.updateStaging, keyring: updater.keyring)
                try updater.install(bundle: file, index: index, downloaded: true)
                try? FileManager.default.removeItem(atPath: file)
            }
            lock = nil
            let state = updater.currentState()
            print("installed build \(state.target?.buildNumber ?? 0) into slot \(state.target?.slot ?? "?"); it boots next, with \(updater.boot.tries) tries")
            switch reboot {
            case "now":
                try await CommandRunner(logger: logger).run(Tool("systemctl", package: "systemd"), ["reboot"])
            case "window":
                let node = try NodeConfig.load(path: locations.config)
                while !node.update.window.contains(Date()) { try await Task.sleep(for: .seconds(60)) }
                try await CommandRunner(logger: logger).run(Tool("systemctl", package: "systemd"), ["reboot"])
            default:
                break
            }
        }
    }

    struct UpdateStatus: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "status", abstract: "Where the update stands: both slots, the booted and blessed one, the last steps.")
        @OptionGroup var locations: Locations
        @Flag(help: "JSON for scripts.") var json = false

        func run() async throws {
            let updater = try locations.environment.updater(logger: Update.logger())
            let report = UpdateReport(updater: updater)
            if json {
                FileHandle.standardOutput.write(try report.json())
            } else {
                print(report.text)
            }
        }
    }
}
