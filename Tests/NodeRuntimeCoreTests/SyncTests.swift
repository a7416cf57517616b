import Foundation
import Logging
import MicromirrorKit
import MicromirrorTestSupport
import NodeRuntimeCore
import ServiceLifecycle
import SystemKit
import Testing

/// Syncing a project from a real rsync daemon on loopback.
@Suite("Syncing from a real rsync daemon", .serialized)
struct SyncTests {
    /// Every file and symlink under `root` (relative path → content, or "-> target"), rsync's
    /// work area excluded unless asked.
    static func tree(_ root: String, includingWorkArea: Bool = false) -> [String: String] {
        var result: [String: String] = [:]
        guard let walker = FileManager.default.enumerator(atPath: root) else { return result }
        while let relative = walker.nextObject() as? String {
            if !includingWorkArea, relative.hasPrefix(".~tmp~") || relative.contains("/.~tmp~") { continue }
            let path = root + "/" + relative
            if let target = try? FileManager.default.destinationOfSymbolicLink(atPath: path) {
                result[relative] = "-> " + target
            } else {
                var isDirectory: ObjCBool = false
                FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory)
                if !isDirectory.boolValue { result[relative] = (try? String(contentsOfFile: path, encoding: .utf8)) ?? "<binary>" }
            }
        }
        return result
    }

    static func write(_ text: String, _ path: String) throws {
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try text.write(toFile: path, atomically: false, encoding: .utf8)
    }

    /// An upstream directory, a daemon serving it as module `name`, and an empty mirror root.
    static func withUpstream(_ name: String = "almalinux", _ body: (_ upstream: String, _ daemon: RsyncDaemon, _ root: String) async throws -> Void) async throws {
        let upstream = try ToolRun.scratchDirectory("upstream")
        let root = try ToolRun.scratchDirectory("mirror")
        let daemon = try RsyncDaemon(modules: [name: upstream])
        defer {
            daemon.stop()
            try? FileManager.default.removeItem(atPath: upstream)
            try? FileManager.default.removeItem(atPath: root)
        }
        try await body(upstream, daemon, root)
    }

    /// The timeout only catches a hung rsync; tools are waited on off the cooperative pool now, so
    /// other tests no longer hold the threads, but image builds still load both cores.
    static func sync(_ recipe: SyncRecipe, _ daemon: RsyncDaemon, _ root: String, timeout: Duration = .seconds(300)) async -> ProjectSync.Report {
        var sync = ProjectSync(recipe: recipe, upstream: daemon.upstream, root: root, logger: Logger(label: "test"))
        sync.timeout = timeout
        return await sync.run()
    }

    @Test("a project arrives whole: files, hard links, safe symlinks; unsafe symlinks stay out; a second run copies nothing")
    func firstSync() async throws {
        try await Self.withUpstream { upstream, daemon, root in
            try Self.write("<repomd/>\n", upstream + "/9/BaseOS/x86_64/os/repodata/repomd.xml")
            try Self.write("rpm bytes\n", upstream + "/9/BaseOS/x86_64/os/Packages/a-1.0.rpm")
            try FileManager.default.linkItem(atPath: upstream + "/9/BaseOS/x86_64/os/Packages/a-1.0.rpm", toPath: upstream + "/9/a-hardlink.rpm")
            try FileManager.default.createSymbolicLink(atPath: upstream + "/latest", withDestinationPath: "9")
            try FileManager.default.createSymbolicLink(atPath: upstream + "/escape", withDestinationPath: "/etc/passwd")
            let report = await Self.sync(SyncRecipe(project: "almalinux", bandwidthLimit: nil), daemon, root)
            #expect(report.succeeded, "\(report)")
            var expected = Self.tree(upstream)
            expected["escape"] = nil  // --safe-links: an absolute link out of the tree is not copied
            #expect(Self.tree(root + "/almalinux") == expected)
            var a = stat(), b = stat()
            stat(root + "/almalinux/9/BaseOS/x86_64/os/Packages/a-1.0.rpm", &a)
            stat(root + "/almalinux/9/a-hardlink.rpm", &b)
            #expect(a.st_ino == b.st_ino, "hard links stay hard links")
            #expect(report.stages.first?.filesTransferred == 2 && report.stages.first?.exitCode == 0)

            let again = await Self.sync(SyncRecipe(project: "almalinux", bandwidthLimit: nil), daemon, root)
            #expect(again.succeeded && again.stages.first?.filesTransferred == 0, "\(again)")
        }
    }

    @Test("each run keeps its log (what rsync changed, the unsafe symlinks it left out, how the run ended); /status links it and shows the project's size")
    func runLog() async throws {
        try await Self.withUpstream { upstream, daemon, root in
            let state = try ToolRun.scratchDirectory("sync-state")
            defer { try? FileManager.default.removeItem(atPath: state) }
            try Self.write("<repomd/>\n", upstream + "/9/BaseOS/x86_64/os/repodata/repomd.xml")
            try Self.write(String(repeating: "r", count: 5000), upstream + "/9/BaseOS/x86_64/os/Packages/a-1.0.rpm")
            try FileManager.default.createSymbolicLink(atPath: upstream + "/escape", withDestinationPath: "/etc/passwd")
            try FileManager.default.createSymbolicLink(atPath: upstream + "/9/up", withDestinationPath: "../../..")
            var sync = ProjectSync(recipe: SyncRecipe(project: "almalinux", bandwidthLimit: nil), upstream: daemon.upstream, root: root, logger: Logger(label: "test"))
            sync.lockDirectory = state
            let report = await sync.run()
            #expect(report.succeeded, "\(report)")
            #expect(report.stages.first?.unsafeLinks == 2, "\(report)")
            // rsync's "Total file size": the files and the symlinks' targets (19 bytes) of the upstream's list.
            #expect(report.plan?.size == 5029, "\(String(describing: report.plan))")
            let name = try #require(report.log)
            let log = try String(contentsOfFile: SyncRunLog.directory(project: "almalinux", stateDirectory: state) + "/" + name, encoding: .utf8)
            #expect(log.contains(">f+++++++++ 5000 9/BaseOS/x86_64/os/Packages/a-1.0.rpm"), "\(log)")
            #expect(log.contains("ignoring unsafe symlink \"escape\" -> \"/etc/passwd\""), "\(log)")
            #expect(log.contains("# all: exit 0 (success), 2 files, 5010 bytes"), "\(log)")
            #expect(log.hasSuffix("# ended: success\n"), "\(log)")
            #expect(!log.contains("xfr#") && !log.contains("\n\n"), "progress lines are counted, not logged, nor empty lines: \(log)")
            #expect(!FileManager.default.fileExists(atPath: SyncProgress.path(project: "almalinux", stateDirectory: state)), "a finished run leaves no progress file")

            let kept = try SyncHistory.open(stateDirectory: state).record(report)
            #expect(kept.log == name && kept.size == 5029 && kept.id != nil)
            try AtomicFile.write(Array(report.json()), to: state + "/almalinux.json")
            let status = try #require(StatusPage.projects(["almalinux"], stateDirectory: state).first)
            #expect(status.log == "/status/logs/almalinux/" + name && status.size == 5029 && status.unsafeLinks == 2, "\(status)")

            let server = try await LiveServer.start(configure: {
                $0.projects = ["almalinux", "ubuntu"]
                $0.syncStateDirectory = state
            }) { _ in }
            let served = try await run("curl", ["-sS", "-w", "%{http_code}", server.base + "/status/logs/almalinux/" + name]).output
            #expect(served == log + "200")
            let html = try await run("curl", ["-sS", server.base + "/status"]).output
            #expect(html.contains("<a href=\"/status/logs/almalinux/\(name)\">log</a> (2 unsafe symlinks left out)") && html.contains("4.9 KiB"), "\(html)")
            // Only a log of a project of this node, by the name the sync gives it.
            for path in ["/status/logs/ubuntu/" + name, "/status/logs/almalinux/history.sqlite", "/status/logs/almalinux/..%2F..%2Falmalinux.json", "/status/logs/nosuch/" + name] {
                let code = try await run("curl", ["-sS", "-o", "/dev/null", "-w", "%{http_code}", server.base + path]).output
                #expect(code == "404" || code == "400", "\(path): \(code)")
            }
            await server.stop()

            // The newest SyncRunLog.kept of a project stay.
            for minute in 0..<(SyncRunLog.kept + 3) {
                _ = SyncRunLog(project: "almalinux", started: Date(timeIntervalSince1970: 1_800_000_000 + Double(minute) * 60), stateDirectory: state)
            }
            let names = SyncRunLog.names(project: "almalinux", stateDirectory: state)
            #expect(names.count == SyncRunLog.kept && !names.contains(name) && names.first == SyncRunLog.fileName(Date(timeIntervalSince1970: 1_800_000_000 + 180)))
        }
    }

    @Test("a running sync shows its stage, bytes, files and rate on /status; a run stopped midway reports what it did receive, and its log says how it ended")
    func progress() async throws {
        try await Self.withUpstream { upstream, daemon, root in
            let state = try ToolRun.scratchDirectory("sync-state")
            defer { try? FileManager.default.removeItem(atPath: state) }
            let size = 4 << 20
            try Self.write(String(repeating: "x", count: size), upstream + "/9/big.iso")
            // 256 KiB/s for 4 MiB: 16 s, stopped at 8.
            var sync = ProjectSync(recipe: SyncRecipe(project: "almalinux", bandwidthLimit: "256K"), upstream: daemon.upstream, root: root, logger: Logger(label: "test"))
            sync.lockDirectory = state
            sync.timeout = .seconds(8)
            let running = Task { await sync.run() }
            var seen: SyncProgress?
            let moving = try await eventually(seconds: 60) {
                seen = SyncProgress.live(project: "almalinux", stateDirectory: state)
                return (seen?.stageNumber ?? 0) == 1 && (seen?.bytes ?? 0) > 0
            }
            #expect(moving, "no progress while copying: \(String(describing: seen))")
            if let seen {
                #expect(seen.plannedBytes == Int64(size) && seen.bytes < Int64(size) && seen.rate > 0 && seen.stages == 1 && seen.stage == "all", "\(seen)")
            }
            let status = StatusPage.projects(["almalinux"], stateDirectory: state).first
            #expect(status?.state == "syncing" && status?.progress != nil, "\(String(describing: status))")
            #expect(StatusPage.html(node: "n", projects: status.map { [$0] } ?? []).contains("stage 1 of 1 (all), "))

            let report = await running.value
            #expect(!report.succeeded && report.failure?.contains("longer than") == true, "\(report)")
            let received = report.stages.last?.bytesReceived ?? 0
            #expect(report.stages.count == 1 && received > 0 && received < Int64(size), "a stopped run says what it received: \(report)")
            #expect(!FileManager.default.fileExists(atPath: SyncProgress.path(project: "almalinux", stateDirectory: state)))
            let log = try String(contentsOfFile: SyncRunLog.directory(project: "almalinux", stateDirectory: state) + "/" + (report.log ?? "?"), encoding: .utf8)
            #expect(log.hasSuffix("# ended: failed: \(report.failure ?? "")\n"), "\(log)")
        }
    }

    @Test("pre and post hooks run with the project, path, trigger and result in their environment; a failing pre hook stops the run before anything changes; a failing post hook is recorded")
    func hooks() async throws {
        try await Self.withUpstream { upstream, daemon, root in
            let state = try ToolRun.scratchDirectory("sync-state")
            let scripts = try ToolRun.scratchDirectory("hooks")
            defer { for path in [state, scripts] { try? FileManager.default.removeItem(atPath: path) } }
            func script(_ name: String, _ body: String) throws -> String {
                let path = scripts + "/" + name
                try ("#!/bin/sh\n" + body).write(toFile: path, atomically: true, encoding: .utf8)
                chmod(path, 0o755)
                return path
            }
            let pre = try script("pre", "env | grep '^MM_' | sort > \(scripts)/pre.env\necho pre says hello\n[ -e \(scripts)/frozen ] && { echo the mirror is frozen; exit 3; }\nexit 0\n")
            let post = try script("post", "echo \"$MM_RESULT $MM_FILES $MM_BYTES $MM_FAILURE\" >> \(scripts)/post.txt\n[ -e \(scripts)/post-fails ] && { echo cannot reach the checkin; exit 1; }\nexit 0\n")
            var recipe = try SyncRecipe.parse("project: almalinux\nbwlimit: 0\npre-hook: [\(pre)]\npost-hook: [\(post), --quiet]\n", file: "almalinux.yaml")
            #expect(recipe.preHook?.command == [pre] && recipe.postHook?.command == [post, "--quiet"])
            recipe.bandwidthLimit = nil
            try Self.write("v1\n", upstream + "/repodata/repomd.xml")
            func run() async -> ProjectSync.Report {
                var sync = ProjectSync(recipe: recipe, upstream: daemon.upstream, root: root, logger: Logger(label: "test"))
                sync.lockDirectory = state
                sync.trigger = .push
                return await sync.run()
            }
            let first = await run()
            #expect(first.succeeded && first.postHookFailure == nil, "\(first)")
            let env = (try? String(contentsOfFile: scripts + "/pre.env", encoding: .utf8)) ?? ""
            for line in ["MM_PROJECT=almalinux", "MM_PATH=\(root)/almalinux", "MM_UPSTREAM=\(daemon.upstream)almalinux/", "MM_TRIGGER=push", "MM_LOG=\(state)/logs/almalinux/\(first.log ?? "?")"] {
                #expect(env.contains(line + "\n"), "\(line) missing from: \(env)")
            }
            let log = (try? String(contentsOfFile: state + "/logs/almalinux/" + (first.log ?? "?"), encoding: .utf8)) ?? ""
            #expect(log.contains("# hook: \(pre)\npre says hello\n"), "what a hook prints goes to the run's log: \(log)")

            // A pre hook that says no: nothing changes, and the post hook hears why.
            FileManager.default.createFile(atPath: scripts + "/frozen", contents: nil)
            try Self.write("v2, longer\n", upstream + "/repodata/repomd.xml")
            let refused = await run()
            #expect(!refused.succeeded && refused.failure?.contains("the pre hook failed, so the run did not start (nothing was changed): pre exited 3: the mirror is frozen") == true, "\(refused)")
            #expect(Self.tree(root + "/almalinux") == ["repodata/repomd.xml": "v1\n"])

            // A post hook that fails does not undo a good run; it is in the report.
            try FileManager.default.removeItem(atPath: scripts + "/frozen")
            FileManager.default.createFile(atPath: scripts + "/post-fails", contents: nil)
            let third = await run()
            #expect(third.succeeded && third.postHookFailure == "post exited 1: cannot reach the checkin", "\(third)")
            let posted = ((try? String(contentsOfFile: scripts + "/post.txt", encoding: .utf8)) ?? "").split(separator: "\n")
            #expect(posted.count == 3 && posted[0].hasPrefix("success 1 ") && posted[1].hasPrefix("failed 0 0 the pre hook failed") && posted[2].hasPrefix("success 1 "), "\(posted)")

            #expect(throws: ConfigError.self) { try SyncRecipe.parse("project: x\npost-hook: [report_mirror]\n", file: "x.yaml") }
        }
    }

    @Test("changes arrive, what the upstream dropped goes, and no work area is left behind")
    func updates() async throws {
        try await Self.withUpstream { upstream, daemon, root in
            try Self.write("one\n", upstream + "/a.txt")
            try Self.write("two\n", upstream + "/dir/b.txt")
            #expect(await Self.sync(SyncRecipe(project: "almalinux"), daemon, root).succeeded)
            try Self.write("one, changed\n", upstream + "/a.txt")
            try FileManager.default.removeItem(atPath: upstream + "/dir/b.txt")
            try Self.write("three\n", upstream + "/c.txt")
            let report = await Self.sync(SyncRecipe(project: "almalinux"), daemon, root)
            #expect(report.succeeded && report.stages.first?.filesDeleted == 1, "\(report)")
            #expect(Self.tree(root + "/almalinux", includingWorkArea: true) == Self.tree(upstream))
        }
    }

    @Test("two stages: new payloads arrive before the indexes that name them, and the first stage deletes nothing")
    func twoStages() async throws {
        try await Self.withUpstream("ubuntu") { upstream, daemon, root in
            try Self.write("old index\n", upstream + "/dists/noble/main/binary-amd64/Packages")
            try Self.write("old\n", upstream + "/pool/main/o/old_1_amd64.deb")
            let recipe = try SyncRecipe.load(path: Self.recipes + "/ubuntu.yaml")
            #expect(recipe.stages.count == 2 && !recipe.stages[0].delete)
            var fast = recipe
            fast.bandwidthLimit = nil
            #expect(await Self.sync(fast, daemon, root).succeeded)
            // Upstream moves on: a new package and an index naming it; the old package goes. (A new
            // size: within one second rsync's quick check compares size and mtime only.)
            try Self.write("new index, longer\n", upstream + "/dists/noble/main/binary-amd64/Packages")
            try Self.write("new\n", upstream + "/pool/main/n/new_1_amd64.deb")
            try FileManager.default.removeItem(atPath: upstream + "/pool/main/o/old_1_amd64.deb")
            var firstOnly = fast
            firstOnly.stages = [recipe.stages[0]]
            #expect(await Self.sync(firstOnly, daemon, root).succeeded)
            let midway = Self.tree(root + "/ubuntu")
            #expect(midway["pool/main/n/new_1_amd64.deb"] == "new\n", "the payload is there first")
            #expect(midway["dists/noble/main/binary-amd64/Packages"] == "old index\n", "the index waits for the second stage")
            #expect(midway["pool/main/o/old_1_amd64.deb"] == "old\n", "the first stage deletes nothing")
            let full = await Self.sync(fast, daemon, root)
            #expect(full.succeeded && full.stages.map(\.name) == recipe.stages.map(\.name), "\(full)")
            #expect(Self.tree(root + "/ubuntu") == Self.tree(upstream))
        }
    }

    /// The tree with each file's bytes and mtime: "exactly as it was" includes the times rsync set.
    static func exactTree(_ root: String) -> [String: String] {
        var result: [String: String] = [:]
        for (path, content) in tree(root, includingWorkArea: true) {
            let mtime = ((try? FileManager.default.attributesOfItem(atPath: root + "/" + path))?[.modificationDate] as? Date)?.timeIntervalSince1970 ?? -1
            result[path] = "\(content) @\(mtime)"
        }
        return result
    }

    @Test("an upstream that lost its files is refused by the deletion guard before anything changes, as its own state; one run allowed by hand goes through")
    func deletionGuard() async throws {
        try await Self.withUpstream { upstream, daemon, root in
            for index in 0..<200 { try Self.write("\(index)\n", upstream + "/9/BaseOS/Packages/f\(index).rpm") }
            try Self.write("<repomd/>\n", upstream + "/9/BaseOS/repodata/repomd.xml")
            let recipe = SyncRecipe(project: "almalinux", bandwidthLimit: nil)
            #expect(await Self.sync(recipe, daemon, root).succeeded)
            // The upstream empties itself, but for one new file: the run would delete everything
            // (201 files and their 4 directories).
            try FileManager.default.removeItem(atPath: upstream + "/9")
            try Self.write("new\n", upstream + "/new.txt")
            let before = Self.exactTree(root + "/almalinux")
            let report = await Self.sync(recipe, daemon, root)
            #expect(!report.succeeded && report.refused == .deletionGuard, "\(report)")
            #expect(report.failure?.contains("would have this run delete 205 of the") == true, "\(report.failure ?? "")")
            #expect(report.failure?.contains("mm-node sync --allow-deletions almalinux") == true)
            #expect(report.stages.isEmpty, "a stage ran: \(report.stages)")
            #expect(Self.exactTree(root + "/almalinux") == before, "the tree changed")
            #expect(Self.tree(root + "/almalinux")["9/BaseOS/repodata/repomd.xml"] == "<repomd/>\n")
            // Shown as its own state on /status.
            let state = try ToolRun.scratchDirectory("sync-state")
            try AtomicFile.write(Array(report.json()), to: state + "/almalinux.json")
            let shown = StatusPage.projects(["almalinux"], stateDirectory: state)
            #expect(shown.first?.state == "refused-by-guard", "\(shown)")
            #expect(StatusPage.html(node: "n", projects: shown).contains("refused by the deletion guard"))

            // A recipe's own share, and a count.
            var generous = recipe
            generous.maxDelete = .share(1)
            #expect(await { var s = ProjectSync(recipe: generous, upstream: daemon.upstream, root: root, logger: Logger(label: "t")); s.reserve = 0; return await s.run() }().refused == nil)
            // (that run went through: put the tree back)
            try FileManager.default.removeItem(atPath: upstream + "/new.txt")
            for index in 0..<200 { try Self.write("\(index)\n", upstream + "/9/BaseOS/Packages/f\(index).rpm") }
            #expect(await Self.sync(recipe, daemon, root).succeeded)

            // Within the share (5 of about 200): goes through. Past it (25 more): refused.
            for index in 0..<5 { try FileManager.default.removeItem(atPath: upstream + "/9/BaseOS/Packages/f\(index).rpm") }
            let small = await Self.sync(recipe, daemon, root)
            #expect(small.succeeded && small.stages.first?.filesDeleted == 5 && small.plan?.deletions == 5, "\(small)")
            for index in 5..<30 { try FileManager.default.removeItem(atPath: upstream + "/9/BaseOS/Packages/f\(index).rpm") }
            let large = await Self.sync(recipe, daemon, root)
            #expect(large.refused == .deletionGuard && large.plan?.deletions == 25, "\(large)")
            var counted = recipe
            counted.maxDelete = .count(30)
            #expect(await Self.sync(counted, daemon, root).succeeded)

            // The NOC looked: one run by hand may delete more (the 170 files left and their 3 directories).
            try FileManager.default.removeItem(atPath: upstream + "/9")
            #expect(await Self.sync(recipe, daemon, root).refused == .deletionGuard)
            var allowed = ProjectSync(recipe: recipe, upstream: daemon.upstream, root: root, logger: Logger(label: "test"))
            allowed.allowDeletions = true
            let through = await allowed.run()
            #expect(through.succeeded && through.stages.first?.filesDeleted == 170 + 3 && through.plan?.deletions == 170 + 3, "\(through)")
            #expect(Self.tree(root + "/almalinux") == Self.tree(upstream))
        }
    }

    /// A small tmpfs as the mirror root, so "the disk" can be filled.
    static func withSmallDisk(megabytes: Int, _ body: (String) async throws -> Void) async throws {
        let mountpoint = try ToolRun.scratchDirectory("small-disk")
        let mounted = try await ToolRun.run("mount", ["-t", "tmpfs", "-o", "size=\(megabytes)m", "tmpfs", mountpoint])
        try #require(mounted.status == 0, "mount tmpfs: \(mounted.combined)")
        defer { ToolRun.cleanUp("umount", [mountpoint]) }
        try await body(mountpoint)
    }

    static func free(_ path: String) -> Int64 {
        var info = statvfs()
        statvfs(path, &info)
        return Int64(info.f_bavail) * Int64(info.f_frsize)
    }

    @Test("a run that does not fit with the reserve is refused before it starts; an earlier run's unfinished files go first when they make it fit")
    func diskBudget() async throws {
        try await Self.withUpstream { upstream, daemon, _ in
            try await Self.withSmallDisk(megabytes: 32) { root in
                try Self.write(String(repeating: "a", count: 20 << 20), upstream + "/big-1.iso")
                try Self.write("kept\n", root + "/almalinux/old.txt")
                var sync = ProjectSync(recipe: SyncRecipe(project: "almalinux", bandwidthLimit: nil), upstream: daemon.upstream, root: root, logger: Logger(label: "t"))
                sync.reserve = 16 << 20
                let before = Self.exactTree(root + "/almalinux")
                let refused = await sync.run()
                #expect(refused.refused == .diskBudget && refused.stages.isEmpty, "\(refused)")
                #expect(refused.failure?.contains("would copy 20.0 MiB and 16.0 MiB stay in reserve") == true, "\(refused.failure ?? "")")
                #expect(Self.exactTree(root + "/almalinux") == before)
                #expect(StatusPage.state(refused) == "refused-by-disk-budget")

                // An earlier run left 24 MiB of unfinished files: removed, the 20 MiB then fit beside 4 MiB of reserve.
                try Self.write(String(repeating: "t", count: 24 << 20), root + "/almalinux/.~tmp~/big-1.iso")
                sync.reserve = 4 << 20
                let fits = await sync.run()
                #expect(fits.succeeded, "\(fits)")
                #expect(Self.tree(root + "/almalinux", includingWorkArea: true) == Self.tree(upstream), "the leftovers stayed or the tree is wrong")

                // No reserve given: 1 GiB, but at most 5 % of the filesystem, so a small disk still syncs.
                #expect(ProjectSync.defaultReserve(filesystemSize: 2 << 40) == 1 << 30 && ProjectSync.defaultReserve(filesystemSize: 40 << 20) == 2 << 20)
                try Self.write("small\n", upstream + "/small.txt")
                sync.reserve = nil
                let small = await sync.run()
                #expect(small.succeeded && small.refused == nil, "the default reserve refused a small disk: \(small)")
            }
        }
    }

    @Test("a run that fills the disk anyway (the upstream grew after its dry run) fails, and its unfinished files go when space is short")
    func fullDisk() async throws {
        try await Self.withUpstream { upstream, daemon, _ in
            try await Self.withSmallDisk(megabytes: 32) { root in
                try Self.write("small\n", upstream + "/small.txt")
                var sync = ProjectSync(recipe: SyncRecipe(project: "almalinux", bandwidthLimit: nil), upstream: daemon.upstream, root: root, logger: Logger(label: "t"))
                sync.reserve = 4 << 20
                #expect(await sync.run().succeeded)
                sync.betweenPlanAndRun = { try? Self.write(String(repeating: "g", count: 40 << 20), upstream + "/grown.iso") }
                let report = await sync.run()
                #expect(!report.succeeded && report.refused == nil, "\(report)")
                #expect(report.failure?.contains("space was short, so its unfinished files (.~tmp~") == true, "\(report.failure ?? "")")
                #expect(Self.tree(root + "/almalinux", includingWorkArea: true) == ["small.txt": "small\n"])
                #expect(Self.free(root) > 24 << 20, "the partial file is still there")
            }
        }
    }

    @Test("an unknown module or an unreachable upstream fails in words, and the tree stays as it was")
    func unreachable() async throws {
        try await Self.withUpstream { upstream, daemon, root in
            try Self.write("kept\n", root + "/nosuch/kept.txt")
            let unknown = await Self.sync(SyncRecipe(project: "nosuch"), daemon, root)
            #expect(!unknown.succeeded && unknown.stages.first?.exitCode == 5, "\(unknown)")
            #expect(unknown.failure?.contains("unknown module") == true, "\(unknown.failure ?? "")")
            let port = daemon.port
            daemon.stop()
            var gone = ProjectSync(recipe: SyncRecipe(project: "nosuch"), upstream: "rsync://127.0.0.1:\(port)/", root: root, logger: Logger(label: "test"))
            gone.timeout = .seconds(300)
            let report = await gone.run()
            #expect(!report.succeeded && report.stages.first?.exitCode == 10, "\(report)")
            #expect(Self.tree(root + "/nosuch") == ["kept.txt": "kept\n"])
        }
    }

    @Test("a run past its timeout is stopped, and the served file is still the old one, whole")
    func timeout() async throws {
        try await Self.withUpstream { upstream, daemon, root in
            let old = String(repeating: "o", count: 1 << 20)
            try Self.write(old, upstream + "/big.iso")
            #expect(await Self.sync(SyncRecipe(project: "almalinux", bandwidthLimit: nil), daemon, root).succeeded)
            // A new size, so rsync's quick check (size and mtime) sees the change.
            try Self.write(String(repeating: "n", count: 2 << 20), upstream + "/big.iso")
            // 1 KiB/s for a 2 MiB change: far longer than the 2 s the run may take, even if this
            // test is held up for minutes by the rest of the suite.
            let report = await Self.sync(SyncRecipe(project: "almalinux", bandwidthLimit: "1K"), daemon, root, timeout: .seconds(2))
            #expect(!report.succeeded && report.failure?.contains("longer than") == true, "\(report)")
            #expect(try String(contentsOfFile: root + "/almalinux/big.iso", encoding: .utf8) == old)
            // rsync itself is gone, not still copying behind our back.
            await #expect(try run("pgrep", ["-f", "rsync .*\(root)/almalinux/"]).status == 1)
        }
    }

    @Test("an unchanged upstream (its freshness files) is not walked again, unless the last run failed")
    func freshness() async throws {
        try await Self.withUpstream("archlinux") { upstream, daemon, root in
            try Self.write("1700000000\n", upstream + "/lastupdate")
            try Self.write("trace 1\n", upstream + "/project/trace/master")
            try Self.write("pkg\n", upstream + "/core/os/x86_64/a.pkg.tar.zst")
            let recipe = SyncRecipe(project: "archlinux", bandwidthLimit: nil, freshness: ["lastupdate", "project/trace/"])
            func run(previousSucceeded: Bool) async -> ProjectSync.Report {
                var sync = ProjectSync(recipe: recipe, upstream: daemon.upstream, root: root, logger: Logger(label: "test"))
                sync.previousSucceeded = previousSucceeded
                return await sync.run()
            }
            let first = await run(previousSucceeded: true)
            #expect(first.succeeded && first.skipped == nil && first.stages.count == 1, "nothing local yet: a full run")
            let second = await run(previousSucceeded: true)
            #expect(second.succeeded && second.skipped != nil && second.stages.isEmpty, "\(second)")
            #expect(await run(previousSucceeded: false).stages.count == 1, "after a failed run the full sync always runs")

            // The upstream changes and says so in its trace directory: a full run again.
            try Self.write("pkg, version 2\n", upstream + "/core/os/x86_64/a.pkg.tar.zst")
            try Self.write("trace 2, later\n", upstream + "/project/trace/master")
            let changed = await run(previousSucceeded: true)
            #expect(changed.skipped == nil && changed.succeeded, "\(changed)")
            #expect(Self.tree(root + "/archlinux") == Self.tree(upstream))

            // A push is the upstream saying it changed: a full run even while lastupdate has not moved yet.
            try Self.write("pkg, version 3 (lastupdate comes later)\n", upstream + "/core/os/x86_64/a.pkg.tar.zst")
            #expect(await run(previousSucceeded: true).skipped != nil, "without a push the unchanged freshness file skips the run")
            var pushed = ProjectSync(recipe: recipe, upstream: daemon.upstream, root: root, logger: Logger(label: "test"))
            pushed.previousSucceeded = true
            pushed.trigger = .push
            let push = await pushed.run()
            #expect(push.skipped == nil && push.succeeded && push.trigger == "push", "\(push)")
            #expect(Self.tree(root + "/archlinux") == Self.tree(upstream))
        }
    }

    /// A repository layout as a shipped recipe syncs it: the files of two versions, and its
    /// indexes, each listing (one path per line, from the project root) the files it names.
    struct Layout: Sendable, CustomTestStringConvertible {
        var recipe: String
        var v1: [String: String]
        var v2: [String: String]
        var indexes: [String]
        var links: [String: String] = [:]
        var testDescription: String { recipe }
    }

    static let layouts: [Layout] = [
        Layout(
            recipe: "archlinux",
            v1: ["core/os/x86_64/a-1-1-x86_64.pkg.tar.zst": "a1", "core/os/x86_64/core.db.tar.gz": "core/os/x86_64/a-1-1-x86_64.pkg.tar.zst\n",
                 "core/os/x86_64/core.files.tar.gz": "core/os/x86_64/a-1-1-x86_64.pkg.tar.zst\n", "lastupdate": "1\n"],
            v2: ["core/os/x86_64/a-2-1-x86_64.pkg.tar.zst": "a2", "core/os/x86_64/zlib-1-1-x86_64.pkg.tar.zst": "z",
                 "core/os/x86_64/core.db.tar.gz": "core/os/x86_64/a-2-1-x86_64.pkg.tar.zst\ncore/os/x86_64/zlib-1-1-x86_64.pkg.tar.zst\n",
                 "core/os/x86_64/core.files.tar.gz": "core/os/x86_64/a-2-1-x86_64.pkg.tar.zst\ncore/os/x86_64/zlib-1-1-x86_64.pkg.tar.zst\n", "lastupdate": "2, later\n"],
            indexes: ["core/os/x86_64/core.db", "core/os/x86_64/core.files"],
            links: ["core/os/x86_64/core.db": "core.db.tar.gz", "core/os/x86_64/core.files": "core.files.tar.gz"]
        ),
        Layout(
            recipe: "almalinux",
            v1: ["9/BaseOS/x86_64/os/Packages/a-1.rpm": "a1", "9/BaseOS/x86_64/os/repodata/repomd.xml": "9/BaseOS/x86_64/os/Packages/a-1.rpm\n"],
            v2: ["9/BaseOS/x86_64/os/Packages/a-2.rpm": "a2", "9/BaseOS/x86_64/os/Packages/z-1.rpm": "z",
                 "9/BaseOS/x86_64/os/repodata/repomd.xml": "9/BaseOS/x86_64/os/Packages/a-2.rpm\n9/BaseOS/x86_64/os/Packages/z-1.rpm\n"],
            indexes: ["9/BaseOS/x86_64/os/repodata/repomd.xml"]
        ),
        Layout(
            recipe: "rocky",
            v1: ["9/AppStream/x86_64/os/Packages/b/b-1.rpm": "b1", "9/AppStream/x86_64/os/repodata/repomd.xml": "9/AppStream/x86_64/os/Packages/b/b-1.rpm\n"],
            v2: ["9/AppStream/x86_64/os/Packages/b/b-2.rpm": "b2",
                 "9/AppStream/x86_64/os/repodata/repomd.xml": "9/AppStream/x86_64/os/Packages/b/b-2.rpm\n"],
            indexes: ["9/AppStream/x86_64/os/repodata/repomd.xml"]
        ),
        Layout(
            recipe: "epel",
            v1: ["9/Everything/x86_64/Packages/e/e-1.rpm": "e1", "9/Everything/x86_64/repodata/repomd.xml": "9/Everything/x86_64/Packages/e/e-1.rpm\n",
                 "fullfiletimelist-epel": "9/Everything/x86_64/Packages/e/e-1.rpm\n"],
            v2: ["9/Everything/x86_64/Packages/e/e-2.rpm": "e2", "9/Everything/x86_64/repodata/repomd.xml": "9/Everything/x86_64/Packages/e/e-2.rpm\n",
                 "fullfiletimelist-epel": "9/Everything/x86_64/Packages/e/e-2.rpm\n"],
            indexes: ["9/Everything/x86_64/repodata/repomd.xml", "fullfiletimelist-epel"]
        ),
        Layout(
            recipe: "opensuse",
            v1: ["tumbleweed/repo/oss/x86_64/a-1.x86_64.rpm": "a1", "tumbleweed/repo/oss/repodata/repomd.xml": "tumbleweed/repo/oss/x86_64/a-1.x86_64.rpm\n"],
            v2: ["tumbleweed/repo/oss/x86_64/a-2.x86_64.rpm": "a2", "tumbleweed/repo/oss/noarch/n-1.noarch.rpm": "n",
                 "tumbleweed/repo/oss/repodata/repomd.xml": "tumbleweed/repo/oss/x86_64/a-2.x86_64.rpm\ntumbleweed/repo/oss/noarch/n-1.noarch.rpm\n"],
            indexes: ["tumbleweed/repo/oss/repodata/repomd.xml"]
        ),
        Layout(
            recipe: "ubuntu",
            v1: ["pool/main/a/a_1_amd64.deb": "a1", "dists/noble/main/binary-amd64/Packages": "pool/main/a/a_1_amd64.deb\n", "dists/noble/InRelease": "dists/noble/main/binary-amd64/Packages\n"],
            v2: ["pool/main/a/a_2_amd64.deb": "a2", "dists/noble/main/binary-amd64/Packages": "pool/main/a/a_2_amd64.deb\n",
                 "dists/noble/main/binary-amd64/Packages.xz": "pool/main/a/a_2_amd64.deb\n",
                 "dists/noble/InRelease": "dists/noble/main/binary-amd64/Packages\ndists/noble/main/binary-amd64/Packages.xz\n"],
            indexes: ["dists/noble/main/binary-amd64/Packages", "dists/noble/main/binary-amd64/Packages.xz", "dists/noble/InRelease"]
        ),
        Layout(
            recipe: "debian",
            v1: ["pool/main/d/d_1_amd64.deb": "d1", "dists/bookworm/main/binary-amd64/Packages.gz": "pool/main/d/d_1_amd64.deb\n",
                 "dists/bookworm/Release": "dists/bookworm/main/binary-amd64/Packages.gz\n"],
            v2: ["pool/main/d/d_2_amd64.deb": "d2", "dists/bookworm/main/binary-amd64/Packages.gz": "pool/main/d/d_2_amd64.deb\n",
                 "dists/bookworm/Release": "dists/bookworm/main/binary-amd64/Packages.gz\n"],
            indexes: ["dists/bookworm/main/binary-amd64/Packages.gz", "dists/bookworm/Release"]
        ),
        Layout(
            recipe: "manjaro",
            v1: ["stable/core/x86_64/a-1-1-x86_64.pkg.tar.zst": "a1", "stable/core/x86_64/core.db.tar.gz": "stable/core/x86_64/a-1-1-x86_64.pkg.tar.zst\n",
                 "stable/state": "stable/core/x86_64/core.db\n"],
            v2: ["stable/core/x86_64/a-2-1-x86_64.pkg.tar.zst": "a2", "stable/core/x86_64/core.db.tar.gz": "stable/core/x86_64/a-2-1-x86_64.pkg.tar.zst\n",
                 "stable/state": "stable/core/x86_64/core.db\n"],
            indexes: ["stable/core/x86_64/core.db", "stable/state"],
            links: ["stable/core/x86_64/core.db": "core.db.tar.gz"]
        ),
        Layout(
            recipe: "fedora",
            v1: ["linux/releases/43/Everything/x86_64/os/Packages/f/f-1.rpm": "f1",
                 "linux/releases/43/Everything/x86_64/os/repodata/repomd.xml": "linux/releases/43/Everything/x86_64/os/Packages/f/f-1.rpm\n",
                 "fullfiletimelist-fedora": "linux/releases/43/Everything/x86_64/os/Packages/f/f-1.rpm\n"],
            v2: ["linux/releases/43/Everything/x86_64/os/Packages/f/f-2.rpm": "f2",
                 "linux/releases/43/Everything/x86_64/os/repodata/repomd.xml": "linux/releases/43/Everything/x86_64/os/Packages/f/f-2.rpm\n",
                 "fullfiletimelist-fedora": "linux/releases/43/Everything/x86_64/os/Packages/f/f-2.rpm\n"],
            indexes: ["linux/releases/43/Everything/x86_64/os/repodata/repomd.xml", "fullfiletimelist-fedora"]
        ),
        Layout(
            recipe: "rpmfusion",
            v1: ["free/fedora/releases/43/Everything/x86_64/os/Packages/v/v-1.rpm": "v1",
                 "free/fedora/releases/43/Everything/x86_64/os/repodata/repomd.xml": "free/fedora/releases/43/Everything/x86_64/os/Packages/v/v-1.rpm\n",
                 "free/fedora/releases/43/Everything/x86_64/os/repoview/index.html": "free/fedora/releases/43/Everything/x86_64/os/Packages/v/v-1.rpm\n"],
            v2: ["free/fedora/releases/43/Everything/x86_64/os/Packages/v/v-2.rpm": "v2",
                 "free/fedora/releases/43/Everything/x86_64/os/repodata/repomd.xml": "free/fedora/releases/43/Everything/x86_64/os/Packages/v/v-2.rpm\n",
                 "free/fedora/releases/43/Everything/x86_64/os/repoview/index.html": "free/fedora/releases/43/Everything/x86_64/os/Packages/v/v-2.rpm\n"],
            indexes: ["free/fedora/releases/43/Everything/x86_64/os/repodata/repomd.xml", "free/fedora/releases/43/Everything/x86_64/os/repoview/index.html"]
        ),
        Layout(
            recipe: "linuxmint",
            v1: ["pool/main/m/mint_1_all.deb": "m1", "dists/zara/main/binary-amd64/Packages.gz": "pool/main/m/mint_1_all.deb\n", "dists/zara/InRelease": "dists/zara/main/binary-amd64/Packages.gz\n"],
            v2: ["pool/main/m/mint_2_all.deb": "m2", "dists/zara/main/binary-amd64/Packages.gz": "pool/main/m/mint_2_all.deb\n", "dists/zara/InRelease": "dists/zara/main/binary-amd64/Packages.gz\n"],
            indexes: ["dists/zara/main/binary-amd64/Packages.gz", "dists/zara/InRelease"]
        ),
    ] + ["centos", "centos-altarch", "centos-stream"].map { recipe in
        Layout(
            recipe: recipe,
            v1: ["9-stream/BaseOS/x86_64/os/Packages/c-1.rpm": "c1", "9-stream/BaseOS/x86_64/os/repodata/repomd.xml": "9-stream/BaseOS/x86_64/os/Packages/c-1.rpm\n"],
            v2: ["9-stream/BaseOS/x86_64/os/Packages/c-2.rpm": "c2", "9-stream/BaseOS/x86_64/os/repodata/repomd.xml": "9-stream/BaseOS/x86_64/os/Packages/c-2.rpm\n"],
            indexes: ["9-stream/BaseOS/x86_64/os/repodata/repomd.xml"]
        )
    } + [
        Layout(
            recipe: "ubuntu-releases",
            v1: ["24.04/ubuntu-24.04-desktop-amd64.iso": "iso1", "24.04/SHA256SUMS": "24.04/ubuntu-24.04-desktop-amd64.iso\n"],
            v2: ["24.04/ubuntu-24.04.1-desktop-amd64.iso": "iso2", "24.04/SHA256SUMS": "24.04/ubuntu-24.04.1-desktop-amd64.iso\n"],
            indexes: ["24.04/SHA256SUMS"]
        ),
    ]

    /// What each index in `tree` names that is not there.
    static func dangling(_ tree: String, _ layout: Layout) -> [String] {
        layout.indexes.flatMap { index -> [String] in
            guard let text = try? String(contentsOfFile: tree + "/" + index, encoding: .utf8) else { return [] }
            return text.split(separator: "\n").map(String.init).filter { !FileManager.default.fileExists(atPath: tree + "/" + $0) }.map { "\(index) → \($0)" }
        }
    }

    @Test("index last, for every layout a recipe syncs: the indexes wait for the last stage, which brings nothing else, so no client ever reads one naming a file not there", arguments: layouts)
    func indexLast(_ layout: Layout) async throws {
        try await Self.withUpstream(layout.recipe) { upstream, daemon, root in
            var recipe = try SyncRecipe.load(path: Self.recipes + "/" + layout.recipe + ".yaml")
            recipe.bandwidthLimit = nil
            recipe.module = layout.recipe
            recipe.freshness = []
            let tree = root + "/" + layout.recipe
            func write(_ files: [String: String], version: Int) throws {
                // Each version's indexes one byte longer: within a second rsync's quick check sees
                // only the size (blank lines name nothing).
                for (path, text) in files { try Self.write(Self.isIndexData(path, layout) ? text + String(repeating: "\n", count: version) : text, upstream + "/" + path) }
                for (link, target) in layout.links where !FileManager.default.fileExists(atPath: upstream + "/" + link) {
                    try FileManager.default.createSymbolicLink(atPath: upstream + "/" + link, withDestinationPath: target)
                }
            }
            try write(layout.v1, version: 1)
            #expect(await Self.sync(recipe, daemon, root).succeeded)
            #expect(Self.dangling(tree, layout).isEmpty)
            // Version 2: new packages, the old ones dropped, new indexes naming them.
            for path in layout.v1.keys where layout.v2[path] == nil { try FileManager.default.removeItem(atPath: upstream + "/" + path) }
            try write(layout.v2, version: 2)
            let old = layout.indexes.map { try? String(contentsOfFile: tree + "/" + $0, encoding: .utf8) }
            #expect(recipe.stages.count >= 2, "\(layout.recipe) syncs in one pass: its indexes are renamed into place among its packages")
            for count in 1..<recipe.stages.count {
                var partial = recipe
                partial.stages = Array(recipe.stages.prefix(count))
                let report = await Self.sync(partial, daemon, root)
                #expect(report.succeeded, "\(report)")
                #expect(Self.dangling(tree, layout).isEmpty, "after stage \(count): \(Self.dangling(tree, layout))")
                #expect(layout.indexes.map { try? String(contentsOfFile: tree + "/" + $0, encoding: .utf8) } == old, "an index moved on before the last stage")
            }
            for path in layout.v2.keys where !layout.indexes.contains(path) && !layout.links.values.contains(where: { path.hasSuffix("/" + $0) }) {
                if !Self.isIndexData(path, layout) { #expect(Self.tree(tree)[path] == layout.v2[path], "\(path) had not arrived before the last stage") }
            }
            let full = await Self.sync(recipe, daemon, root)
            #expect(full.succeeded, "\(full)")
            // The last stage brought the indexes alone (their archives, for Arch), and deleted the old packages.
            let changedIndexes = layout.v2.keys.filter { Self.isIndexData($0, layout) }.count
            #expect(full.stages.last?.filesTransferred == changedIndexes, "\(full.stages)")
            #expect(Self.dangling(tree, layout).isEmpty)
            #expect(Self.tree(tree) == Self.tree(upstream))
        }
    }

    /// Whether `path` is an index or what an index link points at (Arch's `core.db.tar.gz`).
    static func isIndexData(_ path: String, _ layout: Layout) -> Bool {
        layout.indexes.contains(path) || layout.links.contains { link, target in (link as NSString).deletingLastPathComponent + "/" + target == path }
            || path == "lastupdate" || path.hasSuffix("/state")
    }

    @Test("an upstream updating itself (Archive-Update-in-Progress-*) is left alone until it is done; the node writes its own ftpsync trace after a success, kept out of the sync")
    func traces() async throws {
        try await Self.withUpstream("debian") { upstream, daemon, root in
            try Self.write("pool\n", upstream + "/pool/main/a/a_1_all.deb")
            try Self.write("Mon, 01 Dec 2026 10:00:00 +0000\n", upstream + "/project/trace/master")
            try Self.write("syncing\n", upstream + "/Archive-Update-in-Progress-upstream.example")
            var recipe = try SyncRecipe.load(path: Self.recipes + "/debian.yaml")
            recipe.bandwidthLimit = nil
            func run(previousSucceeded: Bool = false) async -> ProjectSync.Report {
                var sync = ProjectSync(recipe: recipe, upstream: daemon.upstream, root: root, logger: Logger(label: "test"))
                sync.traceName = "node1.example.net"
                sync.previousSucceeded = previousSucceeded
                sync.trigger = .interval
                return await sync.run()
            }
            let waiting = await run()
            #expect(!waiting.succeeded && waiting.failure?.contains("the upstream is updating itself (Archive-Update-in-Progress-upstream.example") == true, "\(waiting)")
            #expect(Self.tree(root + "/debian").isEmpty, "a run started on an upstream in the middle of its own update")

            try FileManager.default.removeItem(atPath: upstream + "/Archive-Update-in-Progress-upstream.example")
            let done = await run()
            #expect(done.succeeded, "\(done)")
            let trace = (try? String(contentsOfFile: root + "/debian/project/trace/node1.example.net", encoding: .utf8)) ?? ""
            #expect(trace.contains("Running on host: node1.example.net") && trace.contains("Upstream-mirror: 127.0.0.1") && trace.contains("Archive serial: Mon, 01 Dec 2026 10:00:00 +0000"), "\(trace)")
            #expect(done.freshness == "Mon, 01 Dec 2026 10:00:00 +0000", "the node's own trace was taken for the upstream's")
            // Next time the upstream's trace is unchanged: skipped, the node's own trace neither counted nor deleted.
            let again = await run(previousSucceeded: true)
            #expect(again.succeeded && again.skipped != nil, "\(again)")
            try Self.write("Tue, 02 Dec 2026 10:00:00 +0000, later\n", upstream + "/project/trace/master")
            let changed = await run(previousSucceeded: true)
            #expect(changed.succeeded && changed.skipped == nil && changed.plan?.deletions == 0, "\(changed)")
            #expect(FileManager.default.fileExists(atPath: root + "/debian/project/trace/node1.example.net"))
        }
    }

    static var recipes: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path + "/recipes"
    }

    @Test("every shipped recipe is valid, and the last stage of each deletes")
    func shippedRecipes() throws {
        let files = try FileManager.default.contentsOfDirectory(atPath: Self.recipes).filter { $0.hasSuffix(".yaml") }
        #expect(files.count >= 5)
        for file in files {
            let recipe = try SyncRecipe.load(path: Self.recipes + "/" + file)
            #expect(recipe.project + ".yaml" == file)
            #expect(recipe.stages.last?.delete == true)
        }
    }

    @Test("a recipe may set its own schedule: interval, jitter, timeout")
    func recipeSchedule() throws {
        let recipe = try SyncRecipe.parse("project: archlinux\ninterval: 1h\njitter: 0\ntimeout: 90m\n", file: "archlinux.yaml")
        #expect(recipe.interval == .seconds(3600) && recipe.jitter == .zero && recipe.timeout == .seconds(5400))
        let plain = try SyncRecipe.parse("project: gimp\n", file: "gimp.yaml")
        #expect(plain.interval == nil && plain.jitter == nil && plain.timeout == nil)
    }

    @Test("a bad recipe names every problem with its line")
    func badRecipe() {
        let text = """
            project: "../evil"
            bwlimit: fast
            io-timeout: 5
            max-delete: 0
            interval: 1m
            jitter: soon
            timeout: 10
            stages:
              - name: first
                delete: false
                colour: blue
            surprise: 1
            """
        do {
            _ = try SyncRecipe.parse(text, file: "recipes/evil.yaml")
            Issue.record("accepted")
        } catch {
            let described = error.description
            for expected in [
                "recipes/evil.yaml:1: project", "recipes/evil.yaml:2: bwlimit", "recipes/evil.yaml:3: io-timeout", "recipes/evil.yaml:4: max-delete",
                "recipes/evil.yaml:5: interval", "recipes/evil.yaml:6: jitter", "recipes/evil.yaml:7: timeout",
                "stages[0].colour", "the last stage must delete", "surprise",
            ] {
                #expect(described.contains(expected), "\(expected) missing from: \(described)")
            }
        }
    }
}

/// The sync service on the real clock, with real rsync runs.
@Suite("Sync service")
struct SyncServiceTests {
    @Test("syncs every project at start, picks up a push, records each run, retries a failing project, and stops cleanly")
    func service() async throws {
        let upstream = try ToolRun.scratchDirectory("upstream")
        let root = try ToolRun.scratchDirectory("mirror")
        let state = try ToolRun.scratchDirectory("sync-state")
        let daemon = try RsyncDaemon(modules: ["almalinux": upstream])
        defer {
            daemon.stop()
            for path in [upstream, root, state] { try? FileManager.default.removeItem(atPath: path) }
        }
        try SyncTests.write("v1\n", upstream + "/repodata/repomd.xml")
        var policy = SyncSchedule<ContinuousClock.Instant>.Policy()
        policy.interval = .seconds(3600)  // only the start and pushes run within this test
        policy.jitter = .zero
        policy.retryBase = .seconds(1)
        let recipes = ["almalinux": SyncRecipe(project: "almalinux", bandwidthLimit: nil), "broken": SyncRecipe(project: "broken")]
        let runs = RunCounter()
        let serving = ServeMetrics()
        let service = SyncService(
            projects: ["almalinux", "broken"], policy: policy, clock: ContinuousClock(), stateDirectory: state, metrics: SyncMetrics(sharing: serving),
            logger: Logger(label: "test")
        ) {
            project, _, trigger in
            await runs.add(project)
            await runs.addTrigger(project, trigger.rawValue)
            var sync = ProjectSync(recipe: recipes[project]!, upstream: daemon.upstream, root: root, logger: Logger(label: "test"))
            sync.trigger = trigger
            sync.timeout = .seconds(300)
            return await sync.run()
        }
        let group = ServiceGroup(services: [service], logger: Logger(label: "test"))
        let task = Task { try await group.run() }

        func stateOf(_ project: String) -> String { (try? String(contentsOfFile: state + "/\(project).json", encoding: .utf8)) ?? "" }
        #expect(try await eventually { stateOf("almalinux").contains("\"succeeded\" : true") })
        #expect(SyncTests.tree(root + "/almalinux") == ["repodata/repomd.xml": "v1\n"])

        try SyncTests.write("v2, a longer file\n", upstream + "/repodata/repomd.xml")
        service.push("almalinux")
        #expect(try await eventually { SyncTests.tree(root + "/almalinux")["repodata/repomd.xml"] == "v2, a longer file\n" })

        #expect(try await eventually { stateOf("broken").contains("unknown module") })
        #expect(try await eventually { runs.count("broken") >= 2 }, "a failed project is retried after the backoff")
        #expect(runs.count("almalinux") == 2, "the start and one push: no interval run within the hour")
        #expect(await runs.triggers("almalinux") == ["start-up", "push"])
        // The schedule the status pages read: almalinux next in about the hour, with its trigger.
        #expect(try await eventually {
            guard let next = SyncPlanFile.load(stateDirectory: state)?.projects["almalinux"], let at = next.next else { return false }
            return next.running == nil && next.trigger == "interval" && abs(at.timeIntervalSinceNow - 3600) < 120
        })
        #expect(try await eventually { await runs.triggers("broken").prefix(2) == ["start-up", "retry"] })
        #expect(try await eventually { stateOf("almalinux").contains("\"trigger\" : \"push\"") })

        // The push's run is counted once its report is in, a moment after its files are.
        #expect(try await eventually { serving.prometheusText().contains("micromirror_sync_runs_total{project=\"almalinux\",result=\"success\"} 2") })
        let metrics = serving.prometheusText()
        #expect(metrics.contains("micromirror_sync_runs_total{project=\"broken\",result=\"failed\"}"))
        #expect(metrics.contains("micromirror_sync_last_success_timestamp_seconds{project=\"almalinux\"}"))
        #expect(!metrics.contains("micromirror_sync_last_success_timestamp_seconds{project=\"broken\"}"))
        // Two failures of broken are in the history before the service stops (a run still going
        // at shutdown is stopped, and not recorded: on a loaded machine the second may still run).
        #expect(try await eventually { ((try? SyncHistory.open(stateDirectory: state, readOnly: true).runs(project: "broken").count) ?? 0) >= 2 })

        await group.triggerGracefulShutdown()
        try await task.value

        // Every run is in the history, which outlives the service: the two of almalinux with their
        // triggers, and the failures of broken.
        let history = try SyncHistory.open(stateDirectory: state, readOnly: true)
        let alma = try history.runs(project: "almalinux")
        #expect(alma.map(\.state) == ["success", "success"] && alma.map(\.trigger) == ["push", "start-up"], "\(alma)")
        #expect(alma.allSatisfy { $0.files == 1 && $0.error == nil && $0.finished >= $0.started })
        let broken = try history.runs(project: "broken")
        #expect(broken.count >= 2 && broken.allSatisfy { $0.state == "failed" && $0.error?.contains("unknown module") == true }, "\(broken)")
        #expect(try history.lastSuccess(project: "broken") == nil && history.lastSuccess(project: "almalinux") == alma.first?.finished)

        // A restart picks up from the last runs: almalinux, synced moments ago, waits out its
        // hour (it is not synced again at start); broken keeps retrying.
        let before = SyncPlanFile.load(stateDirectory: state)?.written ?? .distantPast
        let rerun = RunCounter()
        let again = SyncService(projects: ["almalinux", "broken"], policy: policy, clock: ContinuousClock(), stateDirectory: state, logger: Logger(label: "test")) {
            project, _, trigger in
            await rerun.add(project)
            let now = Date()
            return ProjectSync.Report(project: project, upstream: daemon.upstream, started: now, finished: now, succeeded: false, failure: "test")
        }
        let restarted = ServiceGroup(services: [again], logger: Logger(label: "test"))
        let second = Task { try await restarted.run() }
        #expect(try await eventually { (SyncPlanFile.load(stateDirectory: state)?.written ?? .distantPast) > before })
        let plan = SyncPlanFile.load(stateDirectory: state)?.projects
        let last = try #require(alma.first?.finished)
        #expect(plan?["almalinux"]?.trigger == "interval" && abs((plan?["almalinux"]?.next ?? .distantPast).timeIntervalSince(last) - 3600) < 120, "\(String(describing: plan))")
        #expect(try await eventually { await rerun.count("broken") >= 1 })
        await restarted.triggerGracefulShutdown()
        try await second.value
        #expect(rerun.count("almalinux") == 0, "a project synced a minute ago was synced again at start")
    }
}

@Suite("Sync history")
struct SyncHistoryTests {
    @Test("the last good sync survives failures: /status shows it, and calls the project stale once it is older than the threshold")
    func lastGoodSync() throws {
        let state = try ToolRun.scratchDirectory("sync-state")
        defer { try? FileManager.default.removeItem(atPath: state) }
        let history = try SyncHistory.open(stateDirectory: state)
        let t0 = Date(timeIntervalSince1970: 1_800_000_000)
        var good = ProjectSync.Report(project: "arch", upstream: "rsync://u/", started: t0, finished: t0 + 60, succeeded: true)
        good.trigger = "interval"
        good.freshness = "1799999000"
        try history.record(good, freshness: good.freshness)
        var failed = ProjectSync.Report(project: "arch", upstream: "rsync://u/", started: t0 + 3600, finished: t0 + 3601, succeeded: false, failure: "stage all: error in socket I/O")
        failed.trigger = "interval"
        for _ in 0..<3 { try history.record(failed) }
        try AtomicFile.write(Array(failed.json()), to: state + "/arch.json")
        #expect(try history.lastSuccess(project: "arch") == t0 + 60)
        #expect(try history.runs(project: "arch").map(\.state) == ["failed", "failed", "failed", "success"])
        #expect(try history.runs(project: "arch").last?.freshness == "1799999000")

        let fresh = StatusPage.projects(["arch"], stateDirectory: state, now: t0 + 7200)
        #expect(fresh.first?.state == "failed" && fresh.first?.lastSuccess == t0 + 60 && fresh.first?.stale == false, "\(fresh)")
        let later = StatusPage.projects(["arch"], stateDirectory: state, now: t0 + 60 + StatusPage.staleAfter + 1)
        #expect(later.first?.stale == true)
        let html = StatusPage.html(node: "n", projects: later, now: t0 + 60 + StatusPage.staleAfter + 1)
        #expect(html.contains("stale: 1 d ago") || html.contains("stale: 24 h ago") || html.contains("stale: "), "\(html)")
        #expect(StatusPage.json(node: "n", projects: later).contains("\"stale\" : true"))

        // Reopened (a restart): all of it is still there; rows beyond the kept number go, oldest first.
        let again = try SyncHistory(path: history.path)
        #expect(try again.runs(limit: 100).count == 4)
    }
}

/// `/status` on the mirror server, from the sync reports.
@Suite("Status page")
struct StatusPageTests {
    @Test("each project's last sync in HTML and JSON: ok, failed (escaped), not synced yet")
    func statusPage() async throws {
        let state = try ToolRun.scratchDirectory("sync-state")
        defer { try? FileManager.default.removeItem(atPath: state) }
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        let now = Date()
        func report(_ project: String, succeeded: Bool, failure: String?) throws {
            let stage = ProjectSync.StageReport(
                name: "all", exitCode: succeeded ? 0 : 10, meaning: "", filesTransferred: 12, filesDeleted: 1, bytesTransferred: 5000,
                bytesReceived: 3 << 20, seconds: 42
            )
            let value = ProjectSync.Report(
                project: project, upstream: "rsync://up/", started: now.addingTimeInterval(-3642), finished: now.addingTimeInterval(-3600),
                succeeded: succeeded, failure: failure, skipped: nil, stages: [stage]
            )
            try encoder.encode(value).write(to: URL(fileURLWithPath: state + "/\(project).json"))
        }
        try report("almalinux", succeeded: true, failure: nil)
        try report("ubuntu", succeeded: false, failure: "stage all: <script>alert(1)</script> unreachable")
        let server = try await LiveServer.start(configure: {
            $0.projects = ["almalinux", "ubuntu", "archlinux"]
            $0.syncStateDirectory = state
            $0.sponsor = "example-isp.mm.fcix.net"
        }) { _ in }
        let html = try await run("curl", ["-sS", server.base + "/status"]).output
        #expect(html.contains("example-isp.mm.fcix.net: mirror status"))
        #expect(html.contains("<td><a href=\"/almalinux/\">almalinux</a></td><td>ok</td>") && html.contains("(60 min ago)"), "\(html)")
        #expect(html.contains("failed: stage all: &lt;script&gt;alert(1)&lt;/script&gt; unreachable") && !html.contains("<script>"))
        #expect(html.contains("<td><a href=\"/archlinux/\">archlinux</a></td><td>not synced yet</td>"))
        #expect(html.contains("3.0 MiB") && html.contains(">12<"))

        let json = try await run("curl", ["-sS", server.base + "/status?format=json"]).output
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        struct Page: Decodable {
            var node: String
            var projects: [StatusPage.Project]
        }
        let page = try decoder.decode(Page.self, from: Data(json.utf8))
        #expect(page.node == "example-isp.mm.fcix.net")
        #expect(page.projects.map(\.state) == ["success", "failed", "never"])
        #expect(page.projects[0].bytesReceived == 3 << 20 && page.projects[1].failure?.contains("unreachable") == true)

        // The sync service's schedule: archlinux syncing for 2 min, almalinux next in 3 h, ubuntu's retry in 5 min.
        let t = Date(timeIntervalSince1970: now.timeIntervalSince1970.rounded(.down))
        try SyncPlanFile(written: t, projects: [
            "archlinux": .init(running: t - 120, trigger: "start-up"), "almalinux": .init(next: t + 3 * 3600 + 600, trigger: "interval"),
            "ubuntu": .init(next: t + 300, trigger: "retry"),
        ]).save(stateDirectory: state)
        let scheduled = try await run("curl", ["-sS", server.base + "/status"]).output
        #expect(scheduled.contains("<td>syncing since 2 min ago</td>") && scheduled.contains("<td>in 3 h</td>"), "\(scheduled)")

        // tunasync's /jobs, as its web page reads it.
        struct Job: Decodable {
            var name: String
            var is_master: Bool
            var status: String
            var last_update: String
            var last_update_ts: Int64
            var last_started_ts: Int64
            var last_ended_ts: Int64
            var next_schedule_ts: Int64
            var upstream: String
            var size: String
        }
        let jobsText = try await run("curl", ["-sS", server.base + "/jobs"]).output
        let jobs = try JSONDecoder().decode([Job].self, from: Data(jobsText.utf8))
        #expect(jobs.map(\.name) == ["almalinux", "ubuntu", "archlinux"] && jobs.map(\.status) == ["success", "failed", "syncing"], "\(jobsText)")
        let finished = Int64(now.addingTimeInterval(-3600).timeIntervalSince1970)
        #expect(jobs[0].last_update_ts == finished && jobs[0].last_ended_ts == finished && jobs[0].next_schedule_ts == Int64(t.timeIntervalSince1970) + 3 * 3600 + 600)
        #expect(jobs[0].last_update.hasSuffix(" +0000") && jobs[0].last_update.count == 25 && jobs[0].upstream == "rsync://up/almalinux/" && jobs[0].is_master)
        #expect(jobs[2].last_started_ts == Int64(t.timeIntervalSince1970) - 120)

        // MirrorZ: status strings, the site from the Host the client used.
        struct MirrorZ: Decodable {
            struct Site: Decodable { var url: String; var abbr: String }
            struct Mirror: Decodable { var cname: String; var url: String; var status: String }
            var version: Double
            var site: Site
            var mirrors: [Mirror]
        }
        let mirrorzText = try await run("curl", ["-sS", "-H", "Host: mirror.example.net", server.base + "/mirrorz.json"]).output
        let mirrorz = try JSONDecoder().decode(MirrorZ.self, from: Data(mirrorzText.utf8))
        let tt = Int64(t.timeIntervalSince1970)
        #expect(mirrorz.version == 1.7 && mirrorz.site.url == "http://mirror.example.net" && mirrorz.site.abbr == "example-isp.mm.fcix.net", "\(mirrorzText)")
        #expect(mirrorz.mirrors.map(\.status) == ["S\(finished)X\(tt + 3 * 3600 + 600)", "F\(finished)X\(tt + 300)", "Y\(tt - 120)"], "\(mirrorzText)")
        #expect(mirrorz.mirrors.first?.url == "/almalinux")
        let hostile = try await run("curl", ["-sS", "-H", "Host: \"><script>", server.base + "/mirrorz.json"]).output
        #expect(hostile.contains("\"url\" : \"http://localhost\""), "\(hostile)")
        await server.stop()
    }
}

/// Counts runs per project from the service's tasks.
final class RunCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var counts: [String: Int] = [:]

    private var started: [String: [String]] = [:]

    func add(_ project: String) async { lock.withLock { counts[project, default: 0] += 1 } }
    func count(_ project: String) -> Int { lock.withLock { counts[project, default: 0] } }
    func addTrigger(_ project: String, _ trigger: String) async { lock.withLock { started[project, default: []].append(trigger) } }
    func triggers(_ project: String) async -> [String] { lock.withLock { started[project, default: []] } }
}

/// `mm-node sync PROJECT`, the release program, against the real daemon.
@Suite("mm-node sync")
struct SyncCommandTests {
    static var binaries: String {
        ProcessInfo.processInfo.environment["MM_BINARIES"]
            ?? URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path + "/.build/release"
    }

    @Test("syncs a project from its recipe, prints the report, and exits 1 naming the failure")
    func command() async throws {
        let upstream = try ToolRun.scratchDirectory("upstream")
        let root = try ToolRun.scratchDirectory("mirror")
        let daemon = try RsyncDaemon(modules: ["ubuntu": upstream])
        defer {
            daemon.stop()
            try? FileManager.default.removeItem(atPath: upstream)
            try? FileManager.default.removeItem(atPath: root)
            try? FileManager.default.removeItem(atPath: root + "-state")
        }
        try SyncTests.write("index\n", upstream + "/dists/noble/InRelease")
        let ok = try await ToolRun.run(Self.binaries + "/mm-node", ["sync", "ubuntu", "--upstream", daemon.upstream, "--root", root, "--recipes", SyncTests.recipes, "--sync-state", root + "-state"])
        #expect(ok.status == 0, "\(ok.combined)")
        #expect(ok.stdout.contains("\"succeeded\" : true") && ok.stdout.contains("\"name\" : \"indexes\""), "\(ok.stdout)")
        #expect(SyncTests.tree(root + "/ubuntu") == ["dists/noble/InRelease": "index\n"])

        let failed = try await ToolRun.run(Self.binaries + "/mm-node", ["sync", "debian", "--upstream", daemon.upstream, "--root", root, "--recipes", SyncTests.recipes, "--sync-state", root + "-state"])
        #expect(failed.status == 1 && failed.stdout.contains("Unknown module"), "\(failed.combined)")
        let missing = try await ToolRun.run(Self.binaries + "/mm-node", ["sync", "nosuch", "--upstream", daemon.upstream, "--root", root, "--recipes", SyncTests.recipes, "--sync-state", root + "-state"])
        #expect(missing.status != 0 && missing.stderr.contains("nosuch.yaml"), "\(missing.combined)")

        // Both runs by hand are in the history (and on /status, as the service's would be).
        let history = try await ToolRun.run(Self.binaries + "/mm-node", ["history", "--json", "--sync-state", root + "-state"])
        let lines = history.stdout.split(separator: "\n")
        #expect(history.status == 0 && lines.count == 2, "\(history.combined)")
        #expect(lines.first?.contains("\"project\":\"debian\"") == true && lines.first?.contains("\"state\":\"failed\"") == true, "\(history.stdout)")
        #expect(lines.last?.contains("\"project\":\"ubuntu\"") == true && lines.last?.contains("\"trigger\":\"manual\"") == true, "\(history.stdout)")
        let table = try await ToolRun.run(Self.binaries + "/mm-node", ["history", "ubuntu", "--sync-state", root + "-state"])
        #expect(table.status == 0 && table.stdout.contains("ubuntu") && table.stdout.contains("success") && !table.stdout.contains("debian"), "\(table.combined)")
        #expect(StatusPage.projects(["ubuntu"], stateDirectory: root + "-state").first?.state == "success")
    }

    @Test("one run per project: a second mm-node sync is refused while one runs, naming it; SIGTERM stops the first and its rsync")
    func oneAtATime() async throws {
        let upstream = try ToolRun.scratchDirectory("upstream")
        let root = try ToolRun.scratchDirectory("mirror")
        let state = try ToolRun.scratchDirectory("sync-state")
        let slow = try ToolRun.scratchDirectory("recipes")
        let daemon = try RsyncDaemon(modules: ["almalinux": upstream])
        defer {
            daemon.stop()
            for dir in [upstream, root, state, slow] { try? FileManager.default.removeItem(atPath: dir) }
        }
        try SyncTests.write(String(repeating: "n", count: 2 << 20), upstream + "/9/big.iso")
        // 1 KiB/s for 2 MiB: the first run is still copying when the second asks.
        try "project: almalinux\nbwlimit: 1K\n".write(toFile: slow + "/almalinux.yaml", atomically: true, encoding: .utf8)
        let arguments = ["sync", "almalinux", "--upstream", daemon.upstream, "--root", root, "--sync-state", state]
        let first = Process()
        first.executableURL = URL(fileURLWithPath: Self.binaries + "/mm-node")
        first.arguments = arguments + ["--recipes", slow]
        let report = state + "/first.json"
        _ = FileManager.default.createFile(atPath: report, contents: nil)
        first.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: report))
        first.standardError = FileHandle.nullDevice
        try first.run()
        defer { if first.isRunning { kill(first.processIdentifier, SIGKILL) } }
        let rsyncRunning = { (try? await ToolRun.run("pgrep", ["-f", "rsync .*\(root)/almalinux/"]).status) == 0 }
        #expect(try await eventually(seconds: 60) { await rsyncRunning() }, "the first sync's rsync never started")

        // A sync by hand shows on /status as the service's would.
        #expect(StatusPage.projects(["almalinux"], stateDirectory: state).first?.state == "syncing")
        let second = try await ToolRun.run(Self.binaries + "/mm-node", arguments + ["--recipes", SyncTests.recipes])
        #expect(second.status == 1, "\(second.combined)")
        #expect(
            second.stdout.contains("another sync of almalinux is running (process \(first.processIdentifier) holds \(state)/almalinux.lock)"),
            "\(second.combined)"
        )

        kill(first.processIdentifier, SIGTERM)
        #expect(try await eventually(seconds: 60) { !first.isRunning }, "mm-node sync did not end on SIGTERM")
        #expect(first.terminationStatus == 1)
        let printed = (try? String(contentsOfFile: report, encoding: .utf8)) ?? ""
        #expect(printed.contains("the run was stopped (mm-node was asked to end)"), "\(printed)")
        #expect(await !rsyncRunning(), "rsync outlived mm-node sync")
        #expect(!FileManager.default.fileExists(atPath: root + "/almalinux/9/big.iso"), "a file that was still copying is in the tree")
        // The lock went with the process: the next run syncs.
        let third = try await ToolRun.run(Self.binaries + "/mm-node", arguments + ["--recipes", SyncTests.recipes])
        #expect(third.status == 0, "\(third.combined)")
        #expect(FileManager.default.fileExists(atPath: root + "/almalinux/9/big.iso"))
    }
}
