import Foundation

/// What a build produced, signed as a whole: `manifest.json` and its detached `manifest.json.sig`.
///
/// The signature covers the exact bytes of the file. `canonicalBytes()` makes those bytes a pure
/// function of the values (sorted keys, fixed indentation, trailing newline), so equal manifests are
/// equal files.
public struct Manifest: Codable, Sendable, Equatable {
    /// Bumped when the layout of this file changes incompatibly.
    public static let currentFormat = 1

    /// One partition of the disk image.
    public struct Partition: Codable, Sendable, Equatable {
        /// GPT name, e.g. `mm-root-a`.
        public var label: String
        /// DPS type GUID.
        public var typeGUID: GUID
        /// Unique partition GUID (seeded).
        public var uuid: GUID
        /// Byte offset on the disk.
        public var offset: Int64
        /// Partition size in bytes.
        public var size: Int64
        /// Filesystem in it, if any (`vfat`, `erofs`, `ext4`); nil for an empty partition.
        public var filesystem: String?
        /// Filesystem UUID (or vfat volume id) when there is one.
        public var filesystemUUID: String?
        /// Bytes of content at the start of the partition covered by `sha256` (0 for empty).
        public var contentSize: Int64
        /// SHA-256 of the first `contentSize` bytes.
        public var sha256: String?

        public init(
            label: String, typeGUID: GUID, uuid: GUID, offset: Int64, size: Int64,
            filesystem: String?, filesystemUUID: String?, contentSize: Int64, sha256: String?
        ) {
            self.label = label
            self.typeGUID = typeGUID
            self.uuid = uuid
            self.offset = offset
            self.size = size
            self.filesystem = filesystem
            self.filesystemUUID = filesystemUUID
            self.contentSize = contentSize
            self.sha256 = sha256
        }
    }

    /// A file: the disk image, or a payload of the update bundle.
    public struct File: Codable, Sendable, Equatable {
        public var name: String
        public var size: Int64
        public var sha256: String
        public init(name: String, size: Int64, sha256: String) {
            self.name = name
            self.size = size
            self.sha256 = sha256
        }
    }

    public var format: Int
    /// Image name, e.g. `micromirror`.
    public var name: String
    /// Human version, e.g. `0.1.0`.
    public var version: String
    /// Monotonic build number; a node installs only a higher one.
    public var buildNumber: Int64
    /// Hardware profile name, e.g. `hp-t620`.
    public var hardware: String
    /// The `SOURCE_DATE_EPOCH` the build used for every timestamp.
    public var sourceDateEpoch: Int64
    /// Kernel version in the image.
    public var kernelVersion: String
    /// Kernel options common to both slots; each slot's entry adds `root=PARTLABEL=mm-root-<slot> mm.slot=<slot>`.
    public var kernelCommandLine: String
    /// GPT disk GUID.
    public var diskGUID: GUID
    /// The raw disk image.
    public var disk: File
    /// The disk's partitions in table order.
    public var partitions: [Partition]
    /// The update bundle's payloads, in bundle order.
    public var payloads: [File]
    /// The block map written beside the disk image (`IMAGE.bmap`). Its hash signs every mapped
    /// range's SHA-256, so a flash checks the image range by range as it writes it instead of
    /// hashing the whole disk, holes included, first. Nil in releases built before it was signed.
    public var blockMap: File?

    public init(
        name: String, version: String, buildNumber: Int64, hardware: String, sourceDateEpoch: Int64,
        kernelVersion: String, kernelCommandLine: String, diskGUID: GUID, disk: File,
        partitions: [Partition], payloads: [File], blockMap: File? = nil
    ) {
        self.format = Manifest.currentFormat
        self.name = name
        self.version = version
        self.buildNumber = buildNumber
        self.hardware = hardware
        self.sourceDateEpoch = sourceDateEpoch
        self.kernelVersion = kernelVersion
        self.kernelCommandLine = kernelCommandLine
        self.diskGUID = diskGUID
        self.disk = disk
        self.partitions = partitions
        self.payloads = payloads
        self.blockMap = blockMap
    }

    /// The exact bytes written to `manifest.json` and signed.
    public func canonicalBytes() throws -> [UInt8] {
        try CanonicalJSON.bytes(self)
    }

    /// Parses manifest bytes; `source` names the file in errors.
    public static func parse(_ bytes: [UInt8], source: String) throws -> Manifest {
        let manifest: Manifest
        do {
            manifest = try JSONDecoder().decode(Manifest.self, from: Data(bytes))
        } catch {
            throw VerificationError(check: "manifest", message: "\(source) is not a valid manifest: \(error)")
        }
        guard manifest.format == currentFormat else {
            throw VerificationError(
                check: "manifest",
                message: "\(source) has format \(manifest.format); this tool reads format \(currentFormat)"
            )
        }
        return manifest
    }
}
