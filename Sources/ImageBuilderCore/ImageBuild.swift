import Foundation
import Logging
import MicromirrorKit
import SystemKit

/// The image build pipeline: rootfs → customise → erofs → ESP → config → GPT disk → manifest +
/// signature → bundle → block map. Artifacts appear under their final names only when all succeed.
public struct ImageBuild {
    /// The programs the node runs; mm-image is the NOC's tool and stays out of the image.
    public static let programs = ["mm-firstboot", "mm-node"]
    public var options: BuildOptions
    public var logger: Logger
    public var progress: BuildProgress

    public static let stageCount = 9

    public init(options: BuildOptions, logger: Logger, progress: BuildProgress? = nil) {
        self.options = options
        self.logger = logger
        self.progress = progress ?? BuildProgress(stages: Self.stageCount)
    }

    public func run() async throws -> BuildResult {
        let epoch = options.sourceDateEpoch
        let runner = CommandRunner(logger: logger, environment: ["SOURCE_DATE_EPOCH": "\(epoch)", "LC_ALL": "C.UTF-8"])

        // 1. Inputs: everything is checked before anything is written.
        progress.begin("inputs")
        let (definition, hardware) = try Self.loadInputs(options)
        try CommandRunner.require(Tools.build)
        let signingKey = try SigningKeys.loadPrivate(options.keyPath)
        var trusted = [try signingKey.publicKey()]
        for path in options.trustedKeyPaths { trusted += try Keyring.load(file: path).members.map(\.key) }
        var binaries: [String: String] = [:]
        for program in Self.programs {
            let path = options.binariesDirectory + "/" + program
            guard FileManager.default.isExecutableFile(atPath: path) else {
                throw BuildError(
                    stage: "inputs",
                    "\(path) is missing; build the programs first: swift build -c release --static-swift-stdlib"
                )
            }
            binaries[program] = path
        }
        if let recipes = options.recipesDirectory { _ = try RecipeFiles.list(in: recipes) }
        let buildNumber = options.buildNumber ?? epoch
        let identity = ImageIdentity(name: definition.name, version: options.version, buildNumber: buildNumber, hardware: hardware.name)
        let seed = "\(definition.name)/\(hardware.name)/\(options.version)/\(buildNumber)"
        let layout = try DiskLayout(sizes: definition.sizes, diskSize: options.diskSize)
        let baseName = "\(definition.name)-\(hardware.name)-\(options.version)"
        progress.end("\(definition.name) \(options.version) (build \(buildNumber)) for \(hardware.name), key \(trusted[0].keyID)")

        let fm = FileManager.default
        try fm.createDirectory(atPath: options.outputDirectory, withIntermediateDirectories: true)
        let work = "\(options.outputDirectory)/.work-\(baseName)-\(getpid())"
        try? fm.removeItem(atPath: work)
        try fm.createDirectory(atPath: work, withIntermediateDirectories: true)
        defer { try? fm.removeItem(atPath: work) }

        // 2. Base rootfs (cached).
        progress.begin("rootfs")
        let rootfs = RootfsStage(
            definition: definition, hardware: hardware, sourceDateEpoch: epoch, cacheDirectory: options.cacheDirectory,
            runner: runner, progress: progress
        )
        let (basePath, cached) = try await rootfs.run()
        progress.end(cached ? "reused cached \(basePath)" : "built \(basePath) with mmdebstrap")

        // 3. Customise a copy.
        progress.begin("customize")
        let tree = work + "/rootfs"
        try await runner.run(Tools.cp, ["-a", "--reflink=auto", basePath, tree])
        try? fm.removeItem(atPath: tree + "/.mm-rootfs-complete")
        let boot = try BootFiles.find(in: tree)
        try await RootfsCustomizer(
            definition: definition, hardware: hardware, identity: identity, binaries: binaries, trustedKeys: trusted,
            recipesDirectory: options.recipesDirectory, sourceDateEpoch: epoch, runner: runner
        ).apply(to: tree)
        progress.end("programs, units, \(trusted.count) trusted key(s), kernel \(boot.kernelVersion)")

        // 4. Root filesystem.
        progress.begin("root filesystem")
        let rootImage = work + "/root.erofs"
        let rootFsUUID = GUID.derived(seed: seed, purpose: "fs:root")
        try await ErofsWriter(runner: runner).write(tree: tree, to: rootImage, uuid: rootFsUUID, epoch: epoch)
        let rootSize = try RawFile.openForReading(rootImage).size()
        guard let slotA = layout.partition(DiskLayout.Label.rootA), rootSize <= slotA.size else {
            throw BuildError(
                stage: "root filesystem",
                "the root filesystem is \(ByteSize.format(rootSize)) but \(DiskLayout.Label.rootA) holds \(ByteSize.format(layout.partition(DiskLayout.Label.rootA)?.size ?? 0)); raise partitions.root in \(definition.path) or drop packages"
            )
        }
        progress.end("erofs, \(ByteSize.format(rootSize)) of \(ByteSize.format(slotA.size))")

        // 5. ESP.
        progress.begin("esp")
        let kernelOptions = (["ro", "rootfstype=erofs", "systemd.gpt_auto=0"] + hardware.kernelOptions + definition.kernelOptions)
            .joined(separator: " ")
        let entry = BootEntry(
            slot: "a", title: "\(definition.name) \(options.version) (slot a)", buildNumber: buildNumber, options: kernelOptions
        )
        let espImage = work + "/esp.img"
        let esp = layout.partition(DiskLayout.Label.esp)!
        try await ESPWriter(runner: runner, epoch: epoch).write(
            .init(
                bootloader: tree + "/usr/lib/systemd/boot/efi/systemd-bootx64.efi", kernel: boot.kernel, initrd: boot.initrd,
                entry: entry, loaderConf: "timeout 2\neditor no\nconsole-mode keep\n"
            ),
            size: esp.size, to: espImage, staging: work + "/esp-staging"
        )
        progress.end("systemd-boot, slot a entry \(entry.fileName), \(ByteSize.format(esp.size))")

        // 6. Config partition.
        progress.begin("config")
        let configImage = work + "/config.img"
        let config = layout.partition(DiskLayout.Label.config)!
        let configUUID = GUID.derived(seed: seed, purpose: "fs:config")
        try await ConfigWriter(runner: runner).write(
            to: configImage, size: config.size, uuid: configUUID, hashSeed: GUID.derived(seed: seed, purpose: "fs:config-hash"),
            epoch: epoch
        )
        progress.end("ext4 \(ByteSize.format(config.size)), empty until a node file is written")

        // 7. Disk.
        progress.begin("disk")
        let imageName = baseName + ".img"
        let diskImage = work + "/" + imageName
        let assembler = DiskAssembler(layout: layout, seed: seed)
        let contents = [DiskLayout.Label.esp: espImage, DiskLayout.Label.rootA: rootImage, DiskLayout.Label.config: configImage]
        try assembler.write(to: diskImage, contents: contents, progress: progress)
        progress.end("GPT, \(layout.partitions.count) partitions, \(ByteSize.format(layout.diskSize))")

        // 8. Manifest and signature.
        progress.begin("manifest")
        // Each file is hashed once: root.erofs is both mm-root-a's content and a bundle payload.
        var hashed: [String: (Int64, String)] = [:]
        func hashFile(_ path: String, _ label: String) throws -> (Int64, String) {
            if let known = hashed[path] { return known }
            let file = try RawFile.openForReading(path)
            let size = try file.size()
            let result = (size, try file.sha256(length: size) { self.progress.bytes($0, of: size, "hashing \(label)") })
            hashed[path] = result
            return result
        }
        // Record what libblkid finds in each content image, so the manifest states what is really there.
        var filesystems: [String: ProbeResult] = [:]
        for (label, path) in contents { filesystems[label] = try BlockProbe(path: path).superblocks() }
        var partitions: [Manifest.Partition] = []
        for planned in layout.partitions {
            var content: (Int64, String)?
            if let source = contents[planned.label] { content = try hashFile(source, planned.label) }
            partitions.append(
                Manifest.Partition(
                    label: planned.label, typeGUID: planned.type, uuid: assembler.guid(for: planned.label), offset: planned.offset,
                    size: planned.size, filesystem: filesystems[planned.label]?.type, filesystemUUID: filesystems[planned.label]?.values["UUID"],
                    contentSize: content?.0 ?? 0, sha256: content?.1
                )
            )
        }
        let disk = try hashFile(diskImage, "disk image")
        // The block map is signed with the rest: a flash trusts its range hashes.
        let bmap = try BlockMap.generate(for: try RawFile.openForReading(diskImage)) { self.progress.bytes($0, of: disk.0, "bmap") }
        let bmapBytes = Array(bmap.utf8)
        let payloadFiles = ["root.erofs": rootImage, "vmlinuz": boot.kernel, "initrd.img": boot.initrd]
        var payloads: [Manifest.File] = []
        for name in ["root.erofs", "vmlinuz", "initrd.img"] {
            let (size, digest) = try hashFile(payloadFiles[name]!, name)
            payloads.append(Manifest.File(name: name, size: size, sha256: digest))
        }
        let manifest = Manifest(
            name: definition.name, version: options.version, buildNumber: buildNumber, hardware: hardware.name,
            sourceDateEpoch: epoch, kernelVersion: boot.kernelVersion, kernelCommandLine: kernelOptions, diskGUID: assembler.diskGUID,
            disk: Manifest.File(name: imageName, size: disk.0, sha256: disk.1), partitions: partitions, payloads: payloads,
            blockMap: Manifest.File(name: imageName + ".bmap", size: Int64(bmapBytes.count), sha256: SHA256Hasher.hex(of: bmapBytes))
        )
        let manifestBytes = try manifest.canonicalBytes()
        let signature = try signingKey.sign(manifestBytes)
        let staging = work + "/out"
        try fm.createDirectory(atPath: staging, withIntermediateDirectories: true)
        try AtomicFile.write(manifestBytes, to: staging + "/manifest.json")
        try AtomicFile.write(signature, to: staging + "/manifest.json.sig")
        progress.end("build \(buildNumber), disk sha256 \(disk.1.prefix(16))…, signed by \(trusted[0].keyID)")

        // 9. Bundle and block map.
        progress.begin("bundle + bmap")
        let bundleName = baseName + ".mmb"
        let payloadTotal = payloads.reduce(Int64(0)) { $0 + $1.size }
        try Bundle.write(
            to: staging + "/" + bundleName, manifestBytes: manifestBytes, signature: signature, manifest: manifest,
            payloadFiles: payloadFiles
        ) { self.progress.bytes($0, of: payloadTotal, "bundle") }
        try AtomicFile.write(bmapBytes, to: staging + "/" + imageName + ".bmap")
        try fm.moveItem(atPath: diskImage, toPath: staging + "/" + imageName)
        progress.end("\(bundleName), \(imageName).bmap")

        // Publish: the final directory appears whole or not at all.
        let final = "\(options.outputDirectory)/\(baseName)"
        let old = final + ".old-\(getpid())"
        if fm.fileExists(atPath: final) { try fm.moveItem(atPath: final, toPath: old) }
        try fm.moveItem(atPath: staging, toPath: final)
        try? fm.removeItem(atPath: old)

        return BuildResult(
            manifest: manifest, directory: final, image: final + "/" + imageName, blockMap: final + "/" + imageName + ".bmap",
            bundle: final + "/" + bundleName, manifestPath: final + "/manifest.json", rootfsFromCache: cached,
            timings: progress.timings
        )
    }

    /// Loads and validates the definition and the hardware profile, reporting both files' problems together.
    public static func loadInputs(_ options: BuildOptions) throws -> (ImageDefinition, HardwareProfile) {
        var problems: [ConfigProblem] = []
        var definition: ImageDefinition?
        var hardware: HardwareProfile?
        do { definition = try ImageDefinition.load(path: options.definitionPath) } catch { problems += error.problems }
        do { hardware = try HardwareProfile.load(path: options.hardwarePath) } catch { problems += error.problems }
        guard let definition, let hardware else { throw ConfigError(problems: problems) }
        return (definition, hardware)
    }
}
