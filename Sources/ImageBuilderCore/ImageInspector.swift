import Foundation
import Logging
import MicromirrorKit
import SystemKit

/// What `mm-image inspect` reports about a disk image or disk.
public struct ImageReport: Codable, Sendable {
    public struct Partition: Codable, Sendable {
        public var number: Int
        public var label: String
        public var type: String
        public var typeGUID: String
        public var uuid: String
        public var offset: Int64
        public var size: Int64
        public var filesystem: String?
        public var filesystemLabel: String?
        public var filesystemUUID: String?
    }

    public struct Entry: Codable, Sendable {
        public var file: String
        public var fields: [String: String]
    }

    public var path: String
    public var size: Int64
    public var diskGUID: String
    public var partitions: [Partition]
    public var bootEntries: [Entry]
    public var loaderConf: String?
    /// From the signed manifest next to the image, when there is one (not verified here).
    public var manifestVersion: String?
    public var manifestBuildNumber: Int64?
}

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
                var fields: [String: String] = [:]
                for row in text.split(separator: "\n") {
                    let parts = row.split(separator: " ", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
                    if parts.count == 2 { fields[parts[0]] = parts[1] }
                }
                entries.append(ImageReport.Entry(file: String(line.split(separator: "/").last ?? ""), fields: fields))
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

extension ImageReport {
    /// The report as a table for people.
    public var text: String {
        var lines = ["\(path): \(ByteSize.format(size)), GPT disk \(diskGUID)"]
        lines.append("  #  label       type           offset      size        filesystem  label      uuid")
        for p in partitions {
            let fs = p.filesystem ?? "-"
            lines.append(
                "  \(p.number)  \(p.label.padding(11))\(p.type.padding(15))\(ByteSize.format(p.offset).padding(12))\(ByteSize.format(p.size).padding(12))\(fs.padding(12))\((p.filesystemLabel ?? "-").padding(11))\(p.filesystemUUID ?? "-")"
            )
        }
        lines.append("boot entries:")
        if bootEntries.isEmpty { lines.append("  (none)") }
        for e in bootEntries {
            lines.append("  \(e.file): \(e.fields["title"] ?? "?") — version \(e.fields["version"] ?? "?")")
            lines.append("    options \(e.fields["options"] ?? "")")
        }
        if let version = manifestVersion, let build = manifestBuildNumber {
            lines.append("manifest: version \(version), build \(build) (signature not checked here; use mm-image verify)")
        } else {
            lines.append("manifest: none next to the image")
        }
        return lines.joined(separator: "\n")
    }
}

extension String {
    func padding(_ width: Int) -> String {
        count >= width ? self + " " : self + String(repeating: " ", count: width - count)
    }
}
