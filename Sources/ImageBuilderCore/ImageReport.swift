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
