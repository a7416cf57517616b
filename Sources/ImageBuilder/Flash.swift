import ArgumentParser
import Foundation
import ImageBuilderCore
import MicromirrorKit
import Synchronization
import SystemKit

/// `mm-image flash`: the NOC's flashing station. Checks everything first (each node file and its
/// projects' recipes in the image, the image's signature, the block map, every drive's safety),
/// then writes each drive: mapped blocks only, the rest discarded, read back from the drive and
/// hashed, the backup GPT moved to the drive's end, the node file written into mm-config, a
/// record appended to the inventory. A drive that fails does not stop the others.
struct Flash: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write the release image and each drive's node file onto SSDs, verified; refuses any disk that is not safe to write."
    )

    @Argument(help: "The signed disk image (.img), with manifest.json and IMAGE.bmap beside it.") var image: String
    @Option(help: "A drive to write (repeat; each with its --node).") var device: [String] = []
    @Option(help: "The node file for the --device in the same place (repeat).") var node: [String] = []
    @Option(help: "The release's Ed25519 public key (PEM), or a directory of *.pub, the image must be signed with. Without it the keyring inside the image is used: that proves the image whole, not who built it.") var pubkey: String?
    @Option(help: "Manifest. Default: manifest.json beside the image.") var manifest: String?
    @Option(help: "Block map. Default: IMAGE.bmap.") var bmap: String?
    @Option(help: "Recipes to check the node files' projects against when the image's own cannot be read.") var recipes: String?
    @Option(help: "Fedora MirrorManager's report_mirror.conf for a node (repeat): it goes to the drive whose node file's host name is its [host] name.") var reportMirror: [String] = []
    @Option(help: "Inventory to append a record per drive to (JSON lines).") var inventory = "inventory.jsonl"
    @Option(help: "The fleet CA's directory (mm-image fleet ca): each drive gets a new identity key and a watchtower certificate for it on mm-config.") var fleetCa: String?
    @Option(help: "With --fleet-ca: days the first certificate is valid (the node renews it two thirds in; allow for shipping).") var credentialDays = FleetAuthority.defaultDays
    @Flag(help: "Do not ask for confirmation.") var yes = false
    @Flag(help: "Skip reading the drives back.") var noVerify = false
    @Flag(help: "Where a drive cannot discard, write zeros over its unmapped blocks.") var zeroUnmapped = false
    @Flag(help: "Events as JSON lines on standard output (progress, refusals, results); the text goes to standard error.") var json = false
    @Option(help: "Re-verify a drive flashed earlier with this image (repeat), instead of writing: its image ranges, and with --node its node file.")
    var check: [String] = []

    func validate() throws {
        if !check.isEmpty {
            guard device.isEmpty else { throw ValidationError("--check re-verifies drives; it writes none: leave out --device") }
            guard node.count <= check.count else { throw ValidationError("more --node files than --check drives") }
            return
        }
        guard !device.isEmpty else { throw ValidationError("name at least one --device with its --node") }
        guard device.count == node.count else { throw ValidationError("each --device needs its --node (\(device.count) devices, \(node.count) node files)") }
        guard Set(device).count == device.count else { throw ValidationError("a --device is named twice") }
    }

    func run() async throws {
        let logger = CLILogging.logger("mm-image.flash")
        if !check.isEmpty { return try await recheck() }
        // 1. Everything that can be checked without touching a drive.
        let known: Set<String>
        let source: String
        do {
            known = try await ImageRecipes(logger: logger).projects(onDisk: image)
            source = "the image \(image)"
        } catch {
            guard let recipes else { throw fail(BuildError(stage: "flash", "cannot read the image's recipes (\(error)); run as root, or give --recipes DIR")) }
            known = try ImageRecipes.projects(inDirectory: recipes)
            source = recipes
        }
        var problems: [ConfigProblem] = []
        var configs: [NodeConfig] = []
        for file in node {
            do throws(ConfigError) {
                let config = try NodeConfig.load(path: file)
                problems += ImageRecipes.problems(config, file: file, known: known, source: source)
                configs.append(config)
            } catch {
                problems += error.problems
            }
        }
        let reportFiles: [String: String]
        do throws(ConfigError) {
            reportFiles = try Self.reportMirrors(reportMirror, hostnames: configs.map(\.hostname))
        } catch {
            problems += error.problems
            reportFiles = [:]
        }
        var authority: FleetAuthority?
        if let fleetCa {
            do { authority = try FleetAuthority(directory: fleetCa) } catch {
                problems.append(ConfigProblem(file: fleetCa, line: nil, field: "", message: "\(error)"))
            }
            for (file, config) in zip(node, configs) where !(config.telemetry?.hasPrefix("mqtts://") ?? false) {
                // A certificate is only shown over TLS: the node would not report at all.
                problems.append(ConfigProblem(file: file, line: nil, field: "telemetry.target", message: "--fleet-ca gives the node a certificate for the watchtower; its target must be mqtts://, not \(config.telemetry ?? "missing")"))
            }
        }
        guard problems.isEmpty else {
            FileHandle.standardError.write(Data("mm-image: \(ConfigError(problems: problems))\nnothing was written\n".utf8))
            throw ExitCode(1)
        }
        let release: Manifest
        let blockMap: BlockMap.Parsed
        do {
            let keyring: Keyring
            if let pubkey {
                var isDirectory: ObjCBool = false
                _ = FileManager.default.fileExists(atPath: pubkey, isDirectory: &isDirectory)
                keyring = isDirectory.boolValue ? try Keyring.load(directory: pubkey) : try Keyring.load(file: pubkey)
            } else {
                keyring = try await ImageKeyring(runner: CommandRunner(logger: logger)).keyring(onDisk: image)
                say("no --pubkey: checking the signature against the keyring inside the image (key \(keyring.members.map(\.key.keyID).joined(separator: ", "))).")
                say("  That proves the image whole, not who built it: compare the key ID with the NOC's release key, or pass --pubkey.")
            }
            let manifestPath = manifest ?? ((image as NSString).deletingLastPathComponent as NSString).appendingPathComponent("manifest.json")
            (release, blockMap, _) = try ImageVerifier(keyring: keyring).verifyForFlash(
                imagePath: image, manifestPath: manifestPath, blockMapPath: bmap ?? image + ".bmap"
            )
        } catch {
            FileHandle.standardError.write(Data("mm-image: \(image): verification FAILED: \(error)\nnothing was written\n".utf8))
            throw ExitCode(1)
        }

        // 2. Each drive: safe to write, or refused with every reason.
        var results: [(device: String, node: String, result: String)] = []
        var accepted: [(FlashTarget, String, NodeConfig)] = []
        for (index, path) in device.enumerated() {
            do {
                let target = try FlashTarget.inspect(path)
                let refusals = target.refusals(imageSize: blockMap.imageSize)
                if refusals.isEmpty {
                    accepted.append((target, node[index], configs[index]))
                } else {
                    let why = refusals.joined(separator: "; ")
                    FileHandle.standardError.write(Data("mm-image: refusing \(path): \(why)\n".utf8))
                    emit(["event": "refused", "device": path, "reasons": refusals])
                    results.append((path, configs[index].hostname, "refused: " + why))
                    try record(device: path, target: target, node: node[index], config: configs[index], release: release, result: "refused: " + why)
                }
            } catch {
                results.append((path, configs[index].hostname, "refused: \(error)"))
                FileHandle.standardError.write(Data("mm-image: refusing \(path): \(error)\n".utf8))
            }
        }
        if !accepted.isEmpty {
            say("About to write \(release.name) \(release.version) (build \(release.buildNumber)) onto:")
            for (target, file, config) in accepted { say("  \(target.summary)  <- \(config.hostname) (\(file))") }
            fflush(nil)
            if !yes {
                guard isatty(0) == 1 else {
                    FileHandle.standardError.write(Data("mm-image: not a terminal, so nobody can confirm: pass --yes to write\n".utf8))
                    throw ExitCode(1)
                }
                print("Everything on these drives will be lost. Type yes to write: ", terminator: "")
                guard readLine()?.trimmingCharacters(in: .whitespaces) == "yes" else {
                    print("nothing was written")
                    throw ExitCode(1)
                }
            }
        }

        // 3. Write, verify, finish the accepted drives, all at once (each on a thread of its own:
        // the work is blocking I/O), in the order given in the summary.
        let command = self
        let fleet = authority
        let outcomes = await withTaskGroup(of: (Int, String).self) { group in
            for (index, (target, file, config)) in accepted.enumerated() {
                let hostname = config.hostname
                group.addTask {
                    do {
                        try await command.flash(target, nodeFile: file, reportMirror: reportFiles[hostname], blockMap: blockMap)
                        if let authority = fleet {
                            // A drive flashed again is a node rebuilt: its new key replaces the old one.
                            // Recorded (the node's key pinned, the old key's certificates revoked) only once it landed.
                            let (key, certificate) = try authority.issueIdentity(node: hostname, days: command.credentialDays, replacingKey: true, record: false)
                            try await NodeFileWriter(logger: CLILogging.logger("mm-image.flash")).placeCredential(key: key, certificate: certificate, authority: authority.certificate, on: target.path)
                            try authority.record(node: hostname, certificate: certificate)
                            command.say("\(target.path): \(hostname)'s identity and watchtower certificate (serial \(certificate.serial), valid until \(certificate.notAfter))")
                        }
                        return (index, command.noVerify ? "written (not verified)" : "passed")
                    } catch {
                        FileHandle.standardError.write(Data("mm-image: \(target.path): \(error)\n".utf8))
                        return (index, "FAILED: \(error)")
                    }
                }
            }
            var outcomes = [String](repeating: "", count: accepted.count)
            for await (index, result) in group { outcomes[index] = result }
            return outcomes
        }
        for ((target, file, config), result) in zip(accepted, outcomes) {
            results.append((target.path, config.hostname, result))
            try? record(device: target.path, target: target, node: file, config: config, release: release, result: result)
            if result == "passed" || result.hasPrefix("written") {
                say("label: \(config.hostname) | sponsor \(config.sponsor.name) | \(target.model ?? "-") serial \(target.serial ?? "-") | \(release.name) \(release.version) build \(release.buildNumber) | \(Self.day())")
            }
        }
        say("")
        for (path, hostname, result) in results {
            say("\(path)  \(hostname)  \(result)")
            emit(["event": "result", "device": path, "node": hostname, "result": result, "passed": result == "passed" || result.hasPrefix("written")])
        }
        if results.contains(where: { !($0.result == "passed" || $0.result.hasPrefix("written")) }) { throw ExitCode(1) }
    }

    /// Writes and verifies one drive, then gives it its node file and a GPT that spans it.
    /// `DiskFlasher` is used from one thread at a time; its progress closure only prints.
    func flash(_ target: FlashTarget, nodeFile: String, reportMirror: String?, blockMap: BlockMap.Parsed) async throws {
        var flasher = DiskFlasher(image: image, blockMap: blockMap)
        flasher.verify = !noVerify
        flasher.zeroUnmapped = zeroUnmapped
        // When the last line was printed, and when the current stage began (for its rate and ETA).
        let clock = Mutex((printed: Date.distantPast, stage: "", began: Date()))
        flasher.progress = { stage, done, total in
            let now = Date()
            let (due, began) = clock.withLock { state -> (Bool, Date) in
                if state.stage != stage { state = (.distantPast, stage, now) }
                guard now.timeIntervalSince(state.printed) >= 1 || done == total else { return (false, state.began) }
                state.printed = now
                return (true, state.began)
            }
            guard due else { return }
            let seconds = now.timeIntervalSince(began)
            let rate = seconds > 0.2 ? Double(done) / seconds : 0
            let eta = rate > 0 ? Int(Double(total - done) / rate) : nil
            if json {
                var event: [String: Any] = ["event": "progress", "device": target.path, "stage": stage, "done": done, "total": total, "rate": Int64(rate)]
                if let eta { event["eta"] = eta }
                emit(event)
            } else {
                let speed = rate > 0 ? ", \(ByteSize.format(Int64(rate)))/s" + (eta.map { done < total ? ", \($0 / 60):\(String(format: "%02d", $0 % 60)) left" : "" } ?? "") : ""
                FileHandle.standardError.write(Data("\(target.path): \(stage) \(total > 0 ? done * 100 / total : 100)% (\(ByteSize.format(done)) of \(ByteSize.format(total))\(speed))\n".utf8))
            }
        }
        let job = flasher
        let written = try await Self.onThread { try job.write(to: target) }
        let runner = CommandRunner(logger: CLILogging.logger("mm-image.flash"))
        // The image's backup GPT sits at the image's end: move it to the drive's.
        try await Self.onThread { try job.spanDrive(target) }
        // The node file and its projects' recipes were checked before any drive was written.
        try await NodeFileWriter(logger: CLILogging.logger("mm-image.flash")).place(nodeFile: nodeFile, reportMirror: reportMirror, on: target.path)
        if target.kind != .file { _ = try? await runner.run(Tool("partx", package: "util-linux"), ["-u", target.path]) }
        say("\(target.path): wrote \(ByteSize.format(written.mappedBytes)), cleared \(ByteSize.format(written.clearedBytes)) (\(written.cleared))\(written.verified ? ", verified" : "")\(reportMirror.map { ", \($0) as report_mirror.conf" } ?? "")")
    }

    /// `--check`: each drive's image ranges against the block map, and its node file against the
    /// one given for it.
    func recheck() async throws {
        let mapPath = bmap ?? image + ".bmap"
        let blockMap: BlockMap.Parsed
        do { blockMap = try BlockMap.parse(try String(contentsOfFile: mapPath, encoding: .utf8), file: mapPath) } catch { throw fail(error) }
        var failed = false
        for (index, path) in check.enumerated() {
            do {
                let target = try FlashTarget.inspect(path)
                try await Self.onThread { try DiskFlasher(image: image, blockMap: blockMap).check(target) }
                var said = "the image's ranges hash as its block map says"
                if index < node.count {
                    let expected = try String(contentsOfFile: node[index], encoding: .utf8)
                    let found = try await NodeFileWriter(logger: CLILogging.logger("mm-image.flash")).read(from: path)
                    guard found == expected else { throw BuildError(stage: "check", "the node file in mm-config is not \(node[index])") }
                    said += "; mm-config holds \(node[index])"
                }
                print("\(path): passed: \(said)")
            } catch {
                failed = true
                print("\(path): FAILED: \(error)")
            }
        }
        if failed { throw ExitCode(1) }
    }

    /// Text for the engineer: standard output, or standard error when `--json` owns standard output.
    func say(_ text: String) {
        if json { FileHandle.standardError.write(Data((text + "\n").utf8)) } else { print(text) }
    }

    /// One JSON event line on standard output, with `--json`.
    func emit(_ event: [String: Any]) {
        guard json, var line = try? JSONSerialization.data(withJSONObject: event, options: [.sortedKeys, .withoutEscapingSlashes]) else { return }
        line.append(0x0A)
        FileHandle.standardOutput.write(line)
    }

    /// Runs blocking work on a thread of its own, off Swift's few cooperative threads.
    static func onThread<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread { continuation.resume(with: Result { try work() }) }
        }
    }

    /// Which node each `report_mirror.conf` belongs to: the one whose host name is the file's
    /// `[host] name`. A file that is invalid, names no node being flashed, or a second file for the
    /// same node is a problem, found before any drive is written.
    static func reportMirrors(_ files: [String], hostnames: [String]) throws(ConfigError) -> [String: String] {
        var problems: [ConfigProblem] = []
        var byHost: [String: String] = [:]
        for file in files {
            let text: String
            do { text = try String(contentsOfFile: file, encoding: .utf8) } catch {
                problems.append(ConfigProblem(file: file, line: nil, field: "", message: "cannot read it: \(error.localizedDescription)"))
                continue
            }
            let checkin: MirrorManagerCheckin
            do { checkin = try MirrorManagerCheckin.parse(text, file: file) } catch {
                problems += error.problems
                continue
            }
            let host = checkin.sections["host"]?["name"] ?? ""
            if !hostnames.contains(host) {
                problems.append(ConfigProblem(file: file, line: nil, field: "host.name", message: "\(host) is none of the nodes being flashed (\(hostnames.joined(separator: ", ")))"))
            } else if let other = byHost[host] {
                problems.append(ConfigProblem(file: file, line: nil, field: "host.name", message: "\(host) already gets \(other)"))
            } else {
                byHost[host] = file
            }
        }
        guard problems.isEmpty else { throw ConfigError(problems: problems) }
        return byHost
    }

    /// Appends the drive's record to the inventory.
    func record(device: String, target: FlashTarget, node file: String, config: NodeConfig, release: Manifest, result: String) throws {
        let nodeHash = (try? RawFile.openForReading(file)).flatMap { handle in (try? handle.size()).flatMap { try? handle.sha256(length: $0) } } ?? ""
        let entry: [String: Any] = [
            "node": config.hostname, "device": device, "model": target.model ?? "", "serial": target.serial ?? "", "size": target.size,
            "image": release.name, "version": release.version, "build": release.buildNumber, "imageSHA256": release.disk.sha256, "nodeFileSHA256": nodeHash,
            "time": ISO8601DateFormatter().string(from: Date()), "result": result,
        ]
        var line = try JSONSerialization.data(withJSONObject: entry, options: [.sortedKeys, .withoutEscapingSlashes])
        line.append(0x0A)
        if !FileManager.default.fileExists(atPath: inventory) { FileManager.default.createFile(atPath: inventory, contents: nil) }
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: inventory))
        defer { try? handle.close() }
        try handle.seekToEnd()
        try handle.write(contentsOf: line)
    }

    static func day() -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyy-MM-dd"
        return formatter.string(from: Date())
    }
}
