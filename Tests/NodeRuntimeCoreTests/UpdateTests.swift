import Foundation
import ImageBuilderCore
import Logging
import MicromirrorKit
import MicromirrorTestSupport
import NodeRuntimeCore
import ServiceLifecycle
import SystemKit
import Testing

/// A signed release for the update tests: a bundle with a root filesystem of random bytes, a kernel
/// and an initrd, as `mm-image build` lays it out.
struct TestRelease {
    var bundle: String
    var manifest: Manifest
    var root: [UInt8]

    static func make(
        in dir: String, key: Ed25519PrivateKey, build: Int64, hardware: String = "qemu-x86_64", rootBytes: Int = 6 << 20
    ) throws -> TestRelease {
        let random = try #require(FileHandle(forReadingAtPath: "/dev/urandom"))
        let root = Array(random.readData(ofLength: rootBytes))
        let kernel = Array("kernel of build \(build)\n".utf8)
        let initrd = Array("initrd of build \(build)\n".utf8)
        let files = ["root.erofs": root, "vmlinuz": kernel, "initrd.img": initrd]
        var paths: [String: String] = [:]
        for (name, bytes) in files {
            paths[name] = dir + "/build-\(build)-" + name
            try Data(bytes).write(to: URL(fileURLWithPath: paths[name]!))
        }
        let payloads = ["root.erofs", "vmlinuz", "initrd.img"].map { Manifest.File(name: $0, size: Int64(files[$0]!.count), sha256: SHA256Hasher.hex(of: files[$0]!)) }
        let manifest = Manifest(
            name: "micromirror", version: "0.\(build).0", buildNumber: build, hardware: hardware, sourceDateEpoch: 1_763_700_000,
            kernelVersion: "6.1.0-test", kernelCommandLine: "ro rootfstype=erofs panic=10", diskGUID: GUID.derived(seed: "test", purpose: "disk"),
            disk: Manifest.File(name: "disk.img", size: 0, sha256: String(repeating: "0", count: 64)), partitions: [], payloads: payloads
        )
        let bytes = try manifest.canonicalBytes()
        let bundle = dir + "/micromirror-\(hardware)-\(build).mmb"
        try Bundle.write(to: bundle, manifestBytes: bytes, signature: try key.sign(bytes), manifest: manifest, payloadFiles: paths)
        return TestRelease(bundle: bundle, manifest: manifest, root: root)
    }
}

/// A node's update side on real block devices: two loop devices as slots a and b, a directory as
/// the mounted ESP, the state on "mm-data".
final class TestNode: @unchecked Sendable {
    let dir: String
    let key: Ed25519PrivateKey
    let keyring: Keyring
    var slots: [String: String] = [:]
    var esp: String { dir + "/efi" }

    init() async throws {
        dir = try ToolRun.scratchDirectory("update")
        key = try Ed25519PrivateKey.generate()
        keyring = Keyring(members: [.init(source: "release.pub", key: try key.publicKey())])
        for slot in ["a", "b"] {
            let file = dir + "/root-\(slot).img"
            let handle = try RawFile.openForWriting(file, create: true)
            try handle.truncate(to: 16 << 20)
            // Old bytes in the slot, so a test sees whether it was touched.
            try handle.write([UInt8](repeating: slot == "a" ? 0xAA : 0xBB, count: 1 << 20), at: 0)
            let device = try await ToolRun.run("losetup", ["--find", "--show", file])
            guard device.status == 0 else { throw TestError("losetup: \(device.combined)") }
            slots[slot] = device.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        try FileManager.default.createDirectory(atPath: esp + "/loader/entries", withIntermediateDirectories: true)
        // As flashed: slot a's entry without a counter.
        try "title micromirror (slot a)\n".write(toFile: esp + "/loader/entries/micromirror-a.conf", atomically: true, encoding: .utf8)
    }

    deinit {
        for device in slots.values { ToolRun.cleanUp("losetup", ["-d", device]) }
        try? FileManager.default.removeItem(atPath: dir)
    }

    func updater(booted: String = "a", build: Int64 = 100, hardware: String = "qemu-x86_64", keyring: Keyring? = nil) -> Updater {
        let slots = self.slots
        return Updater(
            esp: esp, running: ImageIdentity(name: "micromirror", version: "0.\(build).0", buildNumber: build, hardware: hardware), bootedSlot: booted,
            keyring: keyring ?? self.keyring, statePath: dir + "/srv/state/update.json", staging: dir + "/srv/state/update",
            device: { slot in
                guard let device = slots[slot] else { throw UpdateError("no slot \(slot)") }
                return device
            }, logger: Logger(label: "test")
        )
    }

    /// SHA-256 of the slot's whole device, read past the page cache.
    func slotHash(_ slot: String) throws -> String {
        let file = try RawFile.openForReading(slots[slot]!)
        return try file.sha256(length: try file.size())
    }

    func entries() -> [String] { ((try? FileManager.default.contentsOfDirectory(atPath: esp + "/loader/entries")) ?? []).sorted() }
}

@Suite("Update decisions")
struct UpdateDecisionTests {
    func index(build: Int64, rollout: Int = 100, hardware: String = "qemu-x86_64", minimum: Int64? = nil, downgrade: Bool = false, withdrawn: Bool = false) -> ChannelIndex {
        ChannelIndex(
            channel: "stable", name: "micromirror", version: "x", buildNumber: build, hardware: hardware, bundle: "b.mmb", size: 1, sha256: "00",
            rollout: rollout, minimumBuild: minimum, allowDowngrade: downgrade, withdrawn: withdrawn, published: 0
        )
    }
    let running = ImageIdentity(name: "micromirror", version: "1", buildNumber: 100, hardware: "qemu-x86_64")

    @Test("newer builds for this hardware are taken; every other case says why not")
    func decisions() {
        #expect(UpdateDecision.decide(index: index(build: 101), running: running, nodeID: "n", rolledBack: []) == .install)
        #expect(UpdateDecision.decide(index: index(build: 100), running: running, nodeID: "n", rolledBack: []) == .upToDate)
        #expect(UpdateDecision.decide(index: index(build: 99), running: running, nodeID: "n", rolledBack: []) == .downgradeRefused)
        #expect(UpdateDecision.decide(index: index(build: 99, downgrade: true), running: running, nodeID: "n", rolledBack: []) == .install)
        #expect(UpdateDecision.decide(index: index(build: 101, hardware: "hp-t620"), running: running, nodeID: "n", rolledBack: []) == .otherHardware("hp-t620"))
        #expect(UpdateDecision.decide(index: index(build: 101, minimum: 150), running: running, nodeID: "n", rolledBack: []) == .runningTooOld(minimum: 150))
        #expect(UpdateDecision.decide(index: index(build: 101, withdrawn: true), running: running, nodeID: "n", rolledBack: []) == .withdrawn)
        #expect(UpdateDecision.decide(index: index(build: 101), running: running, nodeID: "n", rolledBack: [101]) == .rolledBackBefore)
        #expect(UpdateDecision.decide(index: index(build: 102), running: running, nodeID: "n", rolledBack: [101]) == .install, "a newer build is taken after a rollback")
    }

    @Test("a rollout picks the same nodes at every poll, keeps them when widened, and about the share it says")
    func rollout() {
        let nodes = (0..<1000).map { "node-\($0)" }
        let at10 = Set(nodes.filter { UpdateDecision.decide(index: index(build: 101, rollout: 10), running: running, nodeID: $0, rolledBack: []) == .install })
        let again = Set(nodes.filter { UpdateDecision.decide(index: index(build: 101, rollout: 10), running: running, nodeID: $0, rolledBack: []) == .install })
        let at50 = Set(nodes.filter { UpdateDecision.decide(index: index(build: 101, rollout: 50), running: running, nodeID: $0, rolledBack: []) == .install })
        #expect(at10 == again)
        #expect(at10.isSubset(of: at50))
        #expect((60...140).contains(at10.count), "\(at10.count) of 1000 nodes at 10 %")
        #expect((420...580).contains(at50.count), "\(at50.count) of 1000 nodes at 50 %")
        #expect(nodes.allSatisfy { UpdateDecision.decide(index: index(build: 101, rollout: 0), running: running, nodeID: $0, rolledBack: []) != .install })
        let next = Set(nodes.filter { UpdateDecision.decide(index: index(build: 102, rollout: 10), running: running, nodeID: $0, rolledBack: []) == .install })
        #expect(next != at10, "each release picks its first nodes afresh")
    }

    @Test("boot entry names: counters parsed, other files ignored")
    func entryNames() {
        #expect(BootEntry.parse(fileName: "micromirror-a.conf") == BootEntry.Name(slot: "a"))
        #expect(BootEntry.parse(fileName: "micromirror-b+3.conf") == BootEntry.Name(slot: "b", triesLeft: 3))
        #expect(BootEntry.parse(fileName: "micromirror-b+2-1.conf") == BootEntry.Name(slot: "b", triesLeft: 2, triesDone: 1))
        #expect(BootEntry.parse(fileName: "micromirror-b+0-3.conf")?.exhausted == true)
        #expect(BootEntry.parse(fileName: "other.conf") == nil && BootEntry.parse(fileName: "micromirror-b+x.conf") == nil)
        #expect(BootEntry(slot: "b", title: "t", buildNumber: 5, options: "ro", triesLeft: 3).fileName == "micromirror-b+3.conf")
    }

    @Test("after a boot the state knows: on trial, blessed, fell back (never again), or cut short")
    func reconcile() {
        var state = UpdateState()
        state.phase = .installed
        state.target = .init(buildNumber: 101, version: "x", slot: "b")
        var waiting = state
        waiting.reconcile(bootedSlot: "a", runningBuild: 100, entries: [.init(slot: "a"), .init(slot: "b", triesLeft: 3)])
        #expect(waiting.phase == .installed, "not rebooted yet")
        var trial = state
        trial.reconcile(bootedSlot: "b", runningBuild: 101, entries: [.init(slot: "a"), .init(slot: "b", triesLeft: 2, triesDone: 1)])
        #expect(trial.phase == .trial)
        var blessed = trial
        blessed.reconcile(bootedSlot: "b", runningBuild: 101, entries: [.init(slot: "a"), .init(slot: "b")])
        #expect(blessed.phase == .idle && blessed.target == nil && blessed.rolledBack.isEmpty)
        var fell = trial
        fell.reconcile(bootedSlot: "a", runningBuild: 100, entries: [.init(slot: "a"), .init(slot: "b", triesLeft: 0, triesDone: 3)])
        #expect(fell.phase == .idle && fell.rolledBack == [101] && fell.lastError?.contains("rolled back") == true)
        #expect(fell.events.last?.message.contains("did not come up healthy") == true)
        var cut = state
        cut.phase = .installing
        var running = cut
        cut.reconcile(bootedSlot: "a", runningBuild: 100, entries: [.init(slot: "a")])
        #expect(cut.phase == .idle && cut.target == nil)
        #expect(cut.events.last?.message == "the install of build 101 was interrupted; it starts again")
        running.reconcile(bootedSlot: "a", runningBuild: 100, entries: [.init(slot: "a")], abandoned: false)
        #expect(running.phase == .installing && running.events.isEmpty, "an install under way in another process is not cut short by a reader")
    }

    @Test("one update at a time: a second apply is refused naming the holder; readers leave a running download alone")
    func lock() async throws {
        let node = try await TestNode()
        let updater = node.updater()
        var state = UpdateState()
        state.phase = .downloading
        state.target = .init(buildNumber: 101, version: "x", slot: "b")
        try state.save(path: updater.statePath)
        var held: FileLock? = try updater.lock()
        do {
            _ = try updater.lock()
            Issue.record("a second lock was granted")
        } catch {
            #expect("\(error)".contains("another update is under way (process \(getpid()) holds"), "\(error)")
        }
        #expect(updater.reconciledState().phase == .downloading, "a status reader cancelled the download")
        #expect(updater.reconciledState(holding: held).phase == .idle, "the lock's new holder takes a left-over download as interrupted")
        held = nil
        #expect(try updater.lock().path == updater.lockPath, "the lock is free again once its holder drops it")
    }
}

@Suite("Installing into the inactive slot (loop devices)", .serialized)
struct SlotInstallTests {
    @Test("a release lands in slot b verified on the disk; its kernel, initrd and counted entry are on the ESP; slot a is untouched")
    func install() async throws {
        let node = try await TestNode()
        let release = try TestRelease.make(in: node.dir, key: node.key, build: 101)
        let aBefore = try node.slotHash("a")
        let state = try node.updater().install(bundle: release.bundle)
        #expect(state.phase == .installed && state.target?.buildNumber == 101 && state.target?.version == "0.101.0" && state.target?.slot == "b")
        #expect(state.target?.bootFiles?.keys.sorted() == ["/loader/entries/micromirror-b+3.conf", "/micromirror/b/initrd.img", "/micromirror/b/vmlinuz"])
        let device = try RawFile.openForReading(node.slots["b"]!)
        #expect(try device.read(count: release.root.count, at: 0) == release.root)
        #expect(try node.slotHash("a") == aBefore)
        #expect(node.entries() == ["micromirror-a.conf", "micromirror-b+3.conf"])
        let entry = try String(contentsOfFile: node.esp + "/loader/entries/micromirror-b+3.conf", encoding: .utf8)
        #expect(entry.contains("version    101") && entry.contains("linux      /micromirror/b/vmlinuz"))
        #expect(entry.contains("options    root=PARTLABEL=mm-root-b mm.slot=b ro rootfstype=erofs panic=10"), "\(entry)")
        #expect(try String(contentsOfFile: node.esp + "/micromirror/b/vmlinuz", encoding: .utf8) == "kernel of build 101\n")
        #expect(try String(contentsOfFile: node.esp + "/micromirror/b/initrd.img", encoding: .utf8) == "initrd of build 101\n")
        let kept = UpdateState.load(path: node.dir + "/srv/state/update.json")
        #expect(kept.phase == .installed && kept.events.last?.message.contains("verified on the disk") == true)
        // `mm-node update status`: both slots, what each holds, which is booted and which blessed.
        let report = UpdateReport(updater: node.updater())
        let b = try #require(report.slots.first { $0.slot == "b" })
        #expect(b.entry == "micromirror-b+3.conf" && b.buildNumber == 101 && b.title == "micromirror 0.101.0 (slot b)" && !b.blessed && !b.booted && b.triesLeft == 3)
        let a = try #require(report.slots.first { $0.slot == "a" })
        #expect(a.entry == "micromirror-a.conf" && a.title == "micromirror (slot a)" && a.buildNumber == nil && a.blessed && a.booted)
        #expect(report.text.contains("slot b: micromirror 0.101.0 (slot b), build 101; entry micromirror-b+3.conf, 3 tries left"), "\(report.text)")
        #expect(report.text.contains("slot a: micromirror (slot a); entry micromirror-a.conf, blessed (booted)"), "\(report.text)")
        let json = String(decoding: try report.json(), as: UTF8.self)
        #expect(json.contains("\"buildNumber\" : 101") && json.contains("\"phase\" : \"installed\""), "\(json)")

        // What the read-back is for: one byte the disk got wrong, found past the page cache, named.
        let root = try #require(release.manifest.payloads.first { $0.name == SlotWriter.rootPayload })
        let writer = SlotWriter(device: node.slots["b"]!, staging: node.dir + "/staging")
        try writer.verifyOnDevice(root)
        let flipped = (release.root.count / 2) | 1
        try RawFile.openForWriting(node.slots["b"]!).write([release.root[flipped] ^ 0x40], at: Int64(flipped))
        do {
            try writer.verifyOnDevice(root)
            Issue.record("a slot with a flipped byte passed its read-back")
        } catch {
            #expect("\(error)".contains("read back from \(node.slots["b"]!)") && "\(error)".contains("the slot is not usable"), "\(error)")
        }

        // The first try of slot b (systemd-boot counts it), unhealthy: its entry is marked bad and the
        // next boot, back on slot a, records the rollback.
        try FileManager.default.moveItem(atPath: node.esp + "/loader/entries/micromirror-b+3.conf", toPath: node.esp + "/loader/entries/micromirror-b+2-1.conf")
        #expect(try BootInstaller(esp: node.esp).markBad(slot: "b") == "micromirror-b+0-1.conf")
        #expect(node.entries() == ["micromirror-a.conf", "micromirror-b+0-1.conf"])
        #expect(try BootInstaller(esp: node.esp).markBad(slot: "a") == nil, "a blessed entry is never marked bad")
        let after = node.updater(booted: "a").reconciledState()
        #expect(after.rolledBack == [101] && after.phase == .idle, "\(after)")
    }

    @Test("every bad bundle is refused before a byte reaches the slot, naming what failed")
    func refusals() async throws {
        let node = try await TestNode()
        let good = try TestRelease.make(in: node.dir, key: node.key, build: 101)
        let before = try node.slotHash("b")
        func refused(_ bundle: String, _ words: String, _ comment: String, updater: Updater? = nil, index: ChannelIndex? = nil) {
            do {
                try (updater ?? node.updater()).install(bundle: bundle, index: index)
                Issue.record("installed: \(comment)")
            } catch {
                #expect("\(error)".contains(words), "\(comment): \(error)")
            }
        }
        // A flipped byte in the manifest, in the signature, in the root payload; a truncated bundle.
        let offsets = try Self.entryOffsets(good.bundle)
        for (name, label) in [("manifest.json", "manifest"), ("manifest.json.sig", "signature"), ("root.erofs", "payload")] {
            let copy = node.dir + "/flipped-\(label).mmb"
            try FileManager.default.copyItem(atPath: good.bundle, toPath: copy)
            let file = try RawFile.openForWriting(copy)
            let at = offsets[name]! + 10
            var byte = try file.read(count: 1, at: at)
            byte[0] ^= 0x01
            try file.write(byte, at: at)
            refused(copy, label == "payload" ? "SHA-256" : "not signed by a trusted key", "a flipped byte in the \(label)")
        }
        let truncated = node.dir + "/truncated.mmb"
        try FileManager.default.copyItem(atPath: good.bundle, toPath: truncated)
        try RawFile.openForWriting(truncated).truncate(to: offsets["root.erofs"]! + 4096)
        refused(truncated, "Truncated tar archive", "a truncated bundle")
        // Signed by a key this image does not trust.
        let stranger = try TestRelease.make(in: node.dir + "/..", key: try Ed25519PrivateKey.generate(), build: 102)
        refused(stranger.bundle, "not signed by a trusted key", "an unknown signer")
        // Other hardware; an older and an equal build; a build that fell back before.
        let t620 = try TestRelease.make(in: node.dir, key: node.key, build: 103, hardware: "hp-t620")
        refused(t620.bundle, "built for hp-t620", "other hardware")
        refused(good.bundle, "no downgrade", "an equal build", updater: node.updater(build: 101))
        refused(good.bundle, "no downgrade", "an older build", updater: node.updater(build: 200))
        // The channel index's hash does not match the file.
        let index = ChannelIndex(
            channel: "stable", name: "micromirror", version: "x", buildNumber: 101, hardware: "qemu-x86_64", bundle: "b.mmb",
            size: try RawFile.openForReading(good.bundle).size(), sha256: String(repeating: "ab", count: 32), rollout: 100, published: 0
        )
        refused(good.bundle, "the signed channel index says", "a bundle that is not the one the channel signed", index: index)
        // While slot a itself is on trial, slot b is its fallback.
        try FileManager.default.moveItem(atPath: node.esp + "/loader/entries/micromirror-a.conf", toPath: node.esp + "/loader/entries/micromirror-a+2-1.conf")
        refused(good.bundle, "still on trial", "an unblessed running slot")
        #expect(try node.slotHash("b") == before, "slot b was touched")
        #expect(node.entries() == ["micromirror-a+2-1.conf"])
    }

    /// Offsets of each entry's data in a bundle (tar: 512-byte headers).
    static func entryOffsets(_ bundle: String) throws -> [String: Int64] {
        let file = try RawFile.openForReading(bundle)
        var offsets: [String: Int64] = [:]
        var at: Int64 = 0
        while true {
            let header = try file.read(count: 512, at: at)
            let name = String(decoding: header[0..<100].prefix { $0 != 0 }, as: UTF8.self)
            if name.isEmpty { break }
            let size = Int64(String(decoding: header[124..<136].prefix { $0 != 0 && $0 != 32 }, as: UTF8.self), radix: 8) ?? 0
            offsets[name] = at + 512
            at += 512 + (size + 511) / 512 * 512
        }
        return offsets
    }
}

/// A channel published with `ChannelPublisher` and served by the mirror server on loopback.
@Suite("Update channel over HTTP", .serialized)
struct ChannelTests {
    @Test("publish, fetch the signed index, download with resume, install; bad signature, missing bundle, full disk and withdrawal refused")
    func channel() async throws {
        let node = try await TestNode()
        let release = try TestRelease.make(in: node.dir, key: node.key, build: 101)
        let server = try await LiveServer.start { root in
            let publisher = ChannelPublisher(directory: root + "/micromirror/channels", channel: "stable", key: node.key, now: 1_800_000_000)
            try publisher.publish(bundle: release.bundle, rollout: 100)
        }
        let channelDirectory = server.root + "/micromirror/channels"
        let client = ChannelClient(indexURL: server.base + "/micromirror/channels/stable.json", logger: Logger(label: "test"))
        let index = try await client.index(keyring: node.keyring)
        #expect(index.buildNumber == 101 && index.rollout == 100 && index.bundle == (release.bundle as NSString).lastPathComponent)
        #expect(UpdateDecision.decide(index: index, running: node.updater().running, nodeID: "n", rolledBack: []) == .install)

        // A download cut at half by a power cut: synced up to half, and past that what the disk kept
        // (zeros where blocks were never written). The next one keeps only the synced half and asks
        // for the rest.
        let staging = node.dir + "/srv/state/update"
        try FileManager.default.createDirectory(atPath: staging, withIntermediateDirectories: true)
        let bytes = try Data(contentsOf: URL(fileURLWithPath: release.bundle))
        try (bytes.prefix(bytes.count / 2) + Data(count: 100_000)).write(to: URL(fileURLWithPath: staging + "/" + index.bundle + ".partial"))
        try "\(bytes.count / 2)\n".write(toFile: staging + "/" + index.bundle + ".partial.synced", atomically: true, encoding: .utf8)
        let file = try await client.download(index, into: staging, keyring: node.keyring)
        #expect(try Data(contentsOf: URL(fileURLWithPath: file)) == bytes)
        #expect(!FileManager.default.fileExists(atPath: staging + "/" + index.bundle + ".partial.synced"))
        let log = try await server.accessLogText { $0.contains(" 206 ") }
        #expect(log.contains("GET /micromirror/channels/\(index.bundle) HTTP/1.1\" 206 \(bytes.count - bytes.count / 2)"), "\(log)")
        try node.updater().install(bundle: file, index: index)
        #expect(node.entries().contains("micromirror-b+3.conf"))

        // The index's signature does not match: refused.
        let signature = try Data(contentsOf: URL(fileURLWithPath: channelDirectory + "/stable.json.sig"))
        var flipped = signature
        flipped[3] ^= 0x40
        try flipped.write(to: URL(fileURLWithPath: channelDirectory + "/stable.json.sig"))
        await #expect(throws: VerificationError.self) { try await client.index(keyring: node.keyring) }
        try signature.write(to: URL(fileURLWithPath: channelDirectory + "/stable.json.sig"))

        // The server's copy is shorter than the index says: refused from the answer's head, nothing
        // downloaded; a left-over download of another release does not stay on mm-data.
        try bytes.prefix(bytes.count - 1000).write(to: URL(fileURLWithPath: channelDirectory + "/" + index.bundle))
        try FileManager.default.createDirectory(atPath: node.dir + "/short", withIntermediateDirectories: true)
        try Data("old".utf8).write(to: URL(fileURLWithPath: node.dir + "/short/micromirror-old.mmb.partial"))
        do {
            _ = try await client.download(index, into: node.dir + "/short", keyring: node.keyring)
            Issue.record("downloaded a truncated bundle")
        } catch {
            #expect("\(error)".contains("the server's copy is \(bytes.count - 1000) bytes, the signed index says \(bytes.count)"), "\(error)")
        }
        let shortPartial = (try? RawFile.openForReading(node.dir + "/short/" + index.bundle + ".partial").size()) ?? 0
        #expect(shortPartial == 0, "\(shortPartial) bytes of a copy the index does not describe were downloaded")
        #expect(!FileManager.default.fileExists(atPath: node.dir + "/short/micromirror-old.mmb.partial"))

        // The index names a bundle the server does not have.
        try FileManager.default.removeItem(atPath: channelDirectory + "/" + index.bundle)
        try? FileManager.default.removeItem(atPath: file)
        do {
            _ = try await client.download(index, into: node.dir + "/other-staging", keyring: node.keyring)
            Issue.record("downloaded a missing bundle")
        } catch {
            #expect("\(error)".contains("HTTP 404") && "\(error)".contains("does not have"), "\(error)")
        }

        // Not enough room on mm-data.
        var greedy = client
        greedy.reserve = 1 << 60
        do {
            _ = try await greedy.download(index, into: node.dir + "/full", keyring: node.keyring)
            Issue.record("downloaded onto a full disk")
        } catch {
            #expect("\(error)".contains("mm-data has") && "\(error)".contains("free"), "\(error)")
        }

        // Withdrawn: nodes that have not installed it do not take it.
        let publisher = ChannelPublisher(directory: channelDirectory, channel: "stable", key: node.key)
        try publisher.withdraw(keyring: node.keyring)
        let withdrawn = try await client.index(keyring: node.keyring)
        #expect(UpdateDecision.decide(index: withdrawn, running: node.updater().running, nodeID: "n", rolledBack: []) == .withdrawn)
        await server.stop()
    }
}

/// A bundle on the channel server that is not what it claims, behind an index correctly signed for
/// it (a compromised or careless publisher: the index alone would let it through).
@Suite("Update downloads checked as they arrive", .serialized)
struct DownloadCheckTests {
    @Test("a tampered bundle behind a signed index is stopped as it arrives: a bad manifest or signer after its first kilobytes, a bad payload at that payload's end; nothing kept, no slot touched")
    func tampered() async throws {
        let node = try await TestNode()
        let good = try TestRelease.make(in: node.dir, key: node.key, build: 101)
        // The ones to be stopped after their manifest are large, so the bytes never sent show in the
        // server's log past what the sockets' buffers take.
        let big = 32 << 20
        let large = try TestRelease.make(in: node.dir + "/..", key: node.key, build: 101, rootBytes: big)
        let stranger = try TestRelease.make(in: node.dir + "/..", key: try Ed25519PrivateKey.generate(), build: 101, rootBytes: big)
        let t620 = try TestRelease.make(in: node.dir, key: node.key, build: 101, hardware: "hp-t620", rootBytes: big)
        let server = try await LiveServer.start { _ in }
        let channel = server.root + "/ch"
        try FileManager.default.createDirectory(atPath: channel, withIntermediateDirectories: true)
        let before = try node.slotHash("b")

        /// Serves `bundle` under a correctly signed index that names exactly its bytes.
        func offer(_ bundle: String, hardware: String = "qemu-x86_64") throws -> ChannelIndex {
            let bytes = try Data(contentsOf: URL(fileURLWithPath: bundle))
            try bytes.write(to: URL(fileURLWithPath: channel + "/offered.mmb"))
            let index = ChannelIndex(
                channel: "stable", name: "micromirror", version: "0.101.0", buildNumber: 101, hardware: hardware, bundle: "offered.mmb",
                size: Int64(bytes.count), sha256: SHA256Hasher.hex(of: bytes), rollout: 100, published: 1_800_000_000
            )
            let text = try index.canonicalBytes()
            try Data(text).write(to: URL(fileURLWithPath: channel + "/stable.json"))
            try Data(try node.key.sign(text)).write(to: URL(fileURLWithPath: channel + "/stable.json.sig"))
            return index
        }
        func flipped(_ entry: String, at delta: Int64 = 10, in release: TestRelease) throws -> String {
            let offsets = try SlotInstallTests.entryOffsets(release.bundle)
            let copy = node.dir + "/flipped-\(entry)"
            try? FileManager.default.removeItem(atPath: copy)
            try FileManager.default.copyItem(atPath: release.bundle, toPath: copy)
            let file = try RawFile.openForWriting(copy)
            var byte = try file.read(count: 1, at: offsets[entry]! + delta)
            byte[0] ^= 0x01
            try file.write(byte, at: offsets[entry]! + delta)
            return copy
        }
        let staging = node.dir + "/srv/state/update"
        let cases: [(bundle: String, hardware: String, words: String, stopsEarly: Bool)] = [
            (try flipped("manifest.json", in: large), "qemu-x86_64", "not signed by a trusted key", true),
            (try flipped("manifest.json.sig", in: large), "qemu-x86_64", "not signed by a trusted key", true),
            (stranger.bundle, "qemu-x86_64", "not signed by a trusted key", true),
            // The index says this node's hardware, the signed manifest inside says otherwise.
            (t620.bundle, "qemu-x86_64", "is build 101 for hp-t620; the signed channel index says build 101 for qemu-x86_64", true),
            (try flipped("root.erofs", at: 4096, in: good), "qemu-x86_64", "payload root.erofs: SHA-256 is", false),
        ]
        for (bundle, hardware, words, stopsEarly) in cases {
            let index = try offer(bundle, hardware: hardware)
            var client = ChannelClient(indexURL: server.base + "/ch/stable.json", logger: Logger(label: "test"))
            let reached = Counter()
            client.progress = { done, _ in reached.raise(to: done) }
            let offered = try await client.index(keyring: node.keyring)
            #expect(offered == index)
            do {
                let file = try await client.download(offered, into: staging, keyring: node.keyring)
                Issue.record("downloaded \(bundle) as \(file)")
            } catch {
                #expect("\(error)".contains(words) && "\(error)".contains("the download was discarded"), "\(bundle): \(error)")
            }
            // A bad manifest is known from the bundle's first kilobytes: the rest is not fetched (the
            // client stops reading; what was already in flight may arrive).
            if stopsEarly { #expect(reached.value < Int64(big / 8), "\(bundle): \(reached.value) bytes taken after the manifest failed") }
            #expect(((try? FileManager.default.contentsOfDirectory(atPath: staging)) ?? []).isEmpty, "a bad download was kept")
        }
        // The server saw each of those four stopped: it handed over a fraction of the 32 MiB.
        let log = try await server.accessLogText { $0.components(separatedBy: "GET /ch/offered.mmb ").count > cases.count }
        let sent = log.split(separator: "\n").filter { $0.contains("GET /ch/offered.mmb ") }.map { Int64($0.split(separator: " ")[9]) ?? -1 }
        #expect(sent.count == cases.count && sent.prefix(4).allSatisfy { $0 < Int64(big / 2) }, "\(log)")
        // The good bundle behind the same kind of index downloads and installs.
        let index = try offer(good.bundle)
        let client = ChannelClient(indexURL: server.base + "/ch/stable.json", logger: Logger(label: "test"))
        #expect(try node.slotHash("b") == before, "slot b was touched by a refused bundle")
        let file = try await client.download(index, into: staging, keyring: node.keyring)
        try node.updater().install(bundle: file, index: index, downloaded: true)
        #expect(node.entries().contains("micromirror-b+3.conf"))
        await server.stop()
    }

    final class Counter: @unchecked Sendable {
        private let lock = NSLock()
        private var highest: Int64 = 0
        func raise(to value: Int64) { lock.withLock { highest = max(highest, value) } }
        var value: Int64 { lock.withLock { highest } }
    }
}

@Suite("Update service", .serialized)
struct UpdateServiceTests {
    final class Reboots: @unchecked Sendable {
        private let lock = NSLock()
        private var count = 0
        func add() { lock.withLock { count += 1 } }
        var value: Int { lock.withLock { count } }
    }

    func service(_ node: TestNode, url: String, booted: String, build: Int64, reboots: Reboots) -> UpdateService<ContinuousClock> {
        UpdateService(
            updater: node.updater(booted: booted, build: build), channel: ChannelClient(indexURL: url, logger: Logger(label: "test")), nodeID: "node-1",
            interval: .seconds(3600), window: .anyTime, clock: ContinuousClock(), logger: Logger(label: "test")
        ) { reboots.add() }
    }

    /// A channel served over HTTP that offers a release of `build`, signed with the node's key.
    func channel(_ node: TestNode, build: Int64) async throws -> (server: LiveServer, url: String, release: TestRelease) {
        let release = try TestRelease.make(in: node.dir, key: node.key, build: build)
        let server = try await LiveServer.start { root in
            try ChannelPublisher(directory: root + "/ch", channel: "stable", key: node.key).publish(bundle: release.bundle, rollout: 100)
        }
        return (server, server.base + "/ch/stable.json", release)
    }

    @Test("installs the channel's release and reboots in the window; after a fallback never retakes that build, and takes the next")
    func lifecycle() async throws {
        let node = try await TestNode()
        let (server, url, _) = try await channel(node, build: 101)
        let reboots = Reboots()
        let first = service(node, url: url, booted: "a", build: 100, reboots: reboots)
        await first.checkOnce()
        #expect(reboots.value == 1, "no reboot into the installed slot")
        #expect(node.entries() == ["micromirror-a.conf", "micromirror-b+3.conf"])
        #expect(UpdateState.load(path: node.dir + "/srv/state/update.json").phase == .installed)

        // Build 101 failed its trial: systemd-boot counted its tries out and slot a booted again.
        try FileManager.default.moveItem(atPath: node.esp + "/loader/entries/micromirror-b+3.conf", toPath: node.esp + "/loader/entries/micromirror-b+0-3.conf")
        let afterFallback = service(node, url: url, booted: "a", build: 100, reboots: reboots)
        await afterFallback.checkOnce()
        let state = UpdateState.load(path: node.dir + "/srv/state/update.json")
        #expect(state.rolledBack == [101] && state.phase == .idle, "\(state)")
        #expect(reboots.value == 1, "it retook the build that fell back")
        #expect(node.entries() == ["micromirror-a.conf", "micromirror-b+0-3.conf"])

        // A newer release is taken.
        let n2 = try TestRelease.make(in: node.dir, key: node.key, build: 102)
        try ChannelPublisher(directory: server.root + "/ch", channel: "stable", key: node.key).publish(bundle: n2.bundle, rollout: 100)
        await afterFallback.checkOnce()
        #expect(reboots.value == 2)
        #expect(node.entries() == ["micromirror-a.conf", "micromirror-b+3.conf"])
        #expect(try String(contentsOfFile: node.esp + "/loader/entries/micromirror-b+3.conf", encoding: .utf8).contains("version    102"))
        let device = try RawFile.openForReading(node.slots["b"]!)
        #expect(try device.read(count: n2.root.count, at: 0) == n2.root)

        // Booted into 102 on trial, then blessed: the state clears; the next check finds it up to date.
        try FileManager.default.moveItem(atPath: node.esp + "/loader/entries/micromirror-b+3.conf", toPath: node.esp + "/loader/entries/micromirror-b+2-1.conf")
        #expect(node.updater(booted: "b", build: 102).currentState().phase == .trial)
        try FileManager.default.moveItem(atPath: node.esp + "/loader/entries/micromirror-b+2-1.conf", toPath: node.esp + "/loader/entries/micromirror-b.conf")
        let blessed = service(node, url: url, booted: "b", build: 102, reboots: reboots)
        await blessed.checkOnce()
        let final = UpdateState.load(path: node.dir + "/srv/state/update.json")
        #expect(final.phase == .idle && final.target == nil && final.rolledBack == [101], "\(final)")
        #expect(reboots.value == 2)
        await server.stop()
    }
}

extension UpdateServiceTests {
    @Test("an entry damaged on the ESP (a power cut on vfat) is installed again; a slot the firmware never boots is given up after a few reboots")
    func damagedAndNeverBooted() async throws {
        let node = try await TestNode()
        let (server, url, _) = try await channel(node, build: 101)
        let reboots = Reboots()
        let updater = service(node, url: url, booted: "a", build: 100, reboots: reboots)
        await updater.checkOnce()
        #expect(reboots.value == 1)
        let entry = node.esp + "/loader/entries/micromirror-b+3.conf"
        let written = try String(contentsOfFile: entry, encoding: .utf8)
        // What the power cut left: the entry's name, none of its bytes. The next look installs again.
        try Data().write(to: URL(fileURLWithPath: entry))
        await updater.checkOnce()
        #expect(try String(contentsOfFile: entry, encoding: .utf8) == written, "the damaged entry was not written again")
        #expect(reboots.value == 2)
        let state = UpdateState.load(path: node.dir + "/srv/state/update.json")
        #expect(state.events.contains { $0.message.contains("are damaged") && $0.message.contains("micromirror-b+3.conf") }, "\(state.events)")
        // Intact, but the firmware keeps booting slot a (the entry's tries untouched): not a reboot loop.
        // The reinstalled target has had one reboot: two more, then it is given up.
        for _ in 0..<3 { await updater.checkOnce() }
        #expect(reboots.value == 4, "rebooted \(reboots.value) times for a slot that never boots")
        let final = UpdateState.load(path: node.dir + "/srv/state/update.json")
        #expect(final.phase == .idle && final.rolledBack == [101] && final.lastError?.contains("never booted") == true, "\(final)")
        #expect(node.entries() == ["micromirror-a.conf"], "the untried entry stayed on the ESP")
        await server.stop()
    }
}

@Suite("Update state on /status and /metrics")
struct UpdateStatusPageTests {
    @Test("/status shows the running image and slot, whether it is blessed, the update's phase and a rollback, in HTML and JSON; /metrics has them as gauges")
    func statusPage() async throws {
        let dir = try ToolRun.scratchDirectory("update-status")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var state = UpdateState()
        state.boot = .init(slot: "a", buildNumber: 100, version: "0.100.0", entries: ["micromirror-a.conf", "micromirror-b+0-3.conf"])
        state.rolledBack = [101]
        state.lastError = "build 101 rolled back"
        state.note("build 101 did not come up healthy in slot b; fell back to slot a (build 100); it will not be taken again")
        try state.save(path: dir + "/update.json")
        let server = try await LiveServer.start(configure: {
            $0.updateStatePath = dir + "/update.json"
            $0.sponsor = "example-isp.mm.fcix.net"
        }) { _ in }
        let html = try await run("curl", ["-sS", server.base + "/status"]).output
        #expect(html.contains("Running 0.100.0 (build 100) from slot a, blessed."), "\(html)")
        #expect(html.contains("Rolled back here, never taken again: build 101") && html.contains("Update: idle."), "\(html)")
        #expect(html.contains("did not come up healthy in slot b"))
        let json = try await run("curl", ["-sS", server.base + "/status?format=json"]).output
        #expect(json.contains("\"rolledBack\" : [\n      101\n    ]") && json.contains("\"slot\" : \"a\""), "\(json)")

        let metrics = try await run("curl", ["-sS", server.base + "/metrics"]).output
        for line in [
            "micromirror_boot_info{slot=\"a\",version=\"0.100.0\",build=\"100\"} 1.0", "micromirror_boot_blessed 1.0",
            "micromirror_update_phase{phase=\"idle\"} 1.0", "micromirror_update_phase{phase=\"downloading\"} 0.0",
            "micromirror_update_rolled_back{build=\"101\"} 1.0", "micromirror_update_rollbacks 1.0", "micromirror_update_error 1.0",
        ] {
            #expect(metrics.split(separator: "\n").contains { $0 == line }, "no \(line) in:\n\(metrics)")
        }
        // The file changes under the running server: a download under way, on trial in slot b.
        state.phase = .downloading
        state.target = .init(buildNumber: 102, version: "0.102.0", slot: "b")
        state.downloadedBytes = 1000
        state.totalBytes = 4000
        state.lastError = nil
        state.boot = .init(slot: "b", buildNumber: 100, version: "0.100.0", entries: ["micromirror-a.conf", "micromirror-b+2-1.conf"])
        try state.save(path: dir + "/update.json")
        let later = try await run("curl", ["-sS", server.base + "/metrics"]).output
        for line in [
            "micromirror_update_phase{phase=\"downloading\"} 1.0", "micromirror_update_phase{phase=\"idle\"} 0.0", "micromirror_update_target_build 102.0",
            "micromirror_update_download_bytes 1000.0", "micromirror_update_download_total_bytes 4000.0", "micromirror_update_error 0.0",
            "micromirror_boot_blessed 0.0", "micromirror_boot_info{slot=\"b\",version=\"0.100.0\",build=\"100\"} 1.0",
            "micromirror_boot_info{slot=\"a\",version=\"0.100.0\",build=\"100\"} 0.0",
        ] {
            #expect(later.split(separator: "\n").contains { $0 == line }, "no \(line) in:\n\(later)")
        }
        await server.stop()
    }
}

extension UpdateServiceTests {
    @Test("a release announced on micromirror/update/NAME (NAME from the channel's URL) is checked and installed at once, no poll due")
    func announced() async throws {
        let node = try await TestNode()
        let (server, url, _) = try await channel(node, build: 101)
        let broker = try MosquittoBroker()
        let example = try String(contentsOfFile: RunCommandTests.example, encoding: .utf8)
        let text = example
            .replacingOccurrences(of: "mqtts://mqtt.fcix.net:8883", with: "mqtt://127.0.0.1:\(broker.port)")
            .replacingOccurrences(of: "  channel: stable\n", with: "  channel: \(url)\n")
        let config = try NodeConfig.parse(text, file: "node.yaml")
        #expect(config.update.channel == url && config.update.channelName == "stable")
        let reboots = Reboots()
        // On a stopped clock neither the start check nor a poll ever comes: only an announcement checks.
        let update = UpdateService(
            updater: node.updater(booted: "a", build: 100), channel: ChannelClient(indexURL: url, logger: Logger(label: "test")), nodeID: "node-1",
            interval: .seconds(60), window: .anyTime, clock: StoppedClock(), logger: Logger(label: "test")
        ) { reboots.add() }
        let listener = try #require(try NodeRuntime.announcements(config, logger: Logger(label: "test"), onAnnouncement: { update.checkNow() }))
        #expect(listener.project(forTopic: "micromirror/update/stable") == "stable" && listener.project(forTopic: "micromirror/update/beta") == nil)
        let group = ServiceGroup(services: [update, listener], logger: Logger(label: "test"))
        let running = Task { try await group.run() }
        // Announced until the subscription is in place (the listener connects in the background).
        let taken = try await eventually(seconds: 60) {
            if reboots.value == 0 { try? await broker.publish("micromirror/update/stable") }
            return reboots.value > 0
        }
        #expect(taken, "the announcement did not make the node check its channel")
        #expect(UpdateState.load(path: node.dir + "/srv/state/update.json").phase == .installed)
        #expect(node.entries() == ["micromirror-a.conf", "micromirror-b+3.conf"])
        await group.triggerGracefulShutdown()
        try await running.value
        await server.stop()
    }
}
