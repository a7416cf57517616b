import Foundation
import Logging
import MicromirrorKit
import SystemKit

/// Reads a disk image's partition table (libparted + our GPT reader for the type GUIDs), probes
/// each partition with libblkid, and lists the ESP's boot entries with mtools.
public struct ImageInspector {
    public var runner: CommandRunner

    public init(logger: Logger) { self.runner = CommandRunner(logger: logger) }

    public func inspect(path: String) async throws -> ImageReport {
        let file = try RawFile.openForReading(path)
        let size = try file.size()
        let records = try PartitionTable.read(path: path)
        let gpt = try GPT.read(from: file)
        var partitions: [ImageReport.Partition] = []
        var espOffset: Int64?
        for record in records {
            let entry = gpt.entries[record.number - 1]
            let offset = record.startSector * GPT.sectorSize
            let length = record.sectorCount * GPT.sectorSize
            let probe = try BlockProbe(path: path, offset: offset, length: length).superblocks()
            if entry.typeGUID == PartitionType.esp { espOffset = offset }
            partitions.append(
                ImageReport.Partition(
                    number: record.number, label: record.name, type: PartitionType.name(of: entry.typeGUID),
                    typeGUID: entry.typeGUID.description, uuid: entry.uniqueGUID.description, offset: offset, size: length,
                    filesystem: probe.type, filesystemLabel: probe.values["LABEL"], filesystemUUID: probe.values["UUID"]
                )
            )
        }
        var entries: [ImageReport.Entry] = []
        var loaderConf: String?
        if let espOffset {
            try CommandRunner.require([Tool("mtype", package: "mtools"), Tool("mdir", package: "mtools")])
            let image = "\(path)@@\(espOffset)"
            let env = ["MTOOLS_SKIP_CHECK": "1"]
            let listing = (try? await runner.run(Tool("mdir", package: "mtools"), ["-b", "-i", image, "::/loader/entries"], environment: env)) ?? ""
            for line in listing.split(separator: "\n").map(String.init).sorted() where line.hasSuffix(".conf") {
                let text = try await runner.run(Tool("mtype", package: "mtools"), ["-i", image, line], environment: env)
                entries.append(ImageReport.Entry(file: String(line.split(separator: "/").last ?? ""), fields: BootEntry.fields(text: text)))
            }
            loaderConf = try? await runner.run(Tool("mtype", package: "mtools"), ["-i", image, "::/loader/loader.conf"], environment: env)
        }
        let manifestPath = ((path as NSString).deletingLastPathComponent as NSString).appendingPathComponent("manifest.json")
        var manifest: Manifest?
        if let data = FileManager.default.contents(atPath: manifestPath),
            let parsed = try? Manifest.parse(Array(data), source: manifestPath),
            parsed.disk.name == (path as NSString).lastPathComponent
        {
            manifest = parsed
        }
        return ImageReport(
            path: path, size: size, diskGUID: gpt.diskGUID.description, partitions: partitions, bootEntries: entries,
            loaderConf: loaderConf, manifestVersion: manifest?.version, manifestBuildNumber: manifest?.buildNumber
        )
    }
}
