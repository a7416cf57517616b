

/// The five partitions every micromirror disk has, in table order, and where they sit.
///
/// Everything is aligned to 1 MiB. The table leaves 1 MiB at the start (protective MBR + primary
/// GPT) and 1 MiB at the end (backup GPT), so the same arithmetic holds on a 512e SSD.
public struct DiskLayout: Sendable, Equatable {
    public static let alignment: Int64 = 1 << 20

    /// GPT names, the only way partitions are ever found (`PARTLABEL=`), never by device name.
    public enum Label {
        public static let esp = "mm-esp"
        public static let rootA = "mm-root-a"
        public static let rootB = "mm-root-b"
        public static let config = "mm-config"
        public static let data = "mm-data"

        /// The root partition of `slot` (`a` or `b`).
        public static func root(slot: String) -> String { "mm-root-\(slot)" }
    }

    public struct Partition: Sendable, Equatable {
        public var label: String
        public var type: GUID
        public var offset: Int64
        public var size: Int64
        public var end: Int64 { offset + size }
    }

    public var partitions: [Partition]
    public var diskSize: Int64

    /// Sizes requested for each partition.
    public struct Sizes: Sendable, Equatable {
        public var esp: Int64
        public var root: Int64
        public var config: Int64
        public var data: Int64
        public init(esp: Int64, root: Int64, config: Int64, data: Int64) {
            self.esp = esp
            self.root = root
            self.config = config
            self.data = data
        }
    }

    /// Lays out the partitions. With `diskSize` nil the disk is as small as the layout allows;
    /// with a larger `diskSize` the data partition takes the rest.
    public init(sizes: Sizes, diskSize: Int64? = nil) throws(LayoutError) {
        let requested: [(String, GUID, Int64)] = [
            (Label.esp, PartitionType.esp, sizes.esp),
            (Label.rootA, PartitionType.rootX86_64, sizes.root),
            (Label.rootB, PartitionType.rootX86_64, sizes.root),
            (Label.config, PartitionType.linuxGeneric, sizes.config),
            (Label.data, PartitionType.srv, sizes.data),
        ]
        var offset = DiskLayout.alignment
        var partitions: [Partition] = []
        for (label, type, size) in requested {
            guard size >= DiskLayout.alignment else {
                throw LayoutError("\(label) is \(size) bytes; every partition needs at least 1 MiB")
            }
            let aligned = DiskLayout.alignUp(size)
            partitions.append(Partition(label: label, type: type, offset: offset, size: aligned))
            offset += aligned
        }
        let minimum = offset + DiskLayout.alignment
        if let diskSize {
            guard diskSize >= minimum else {
                throw LayoutError(
                    "the disk is \(ByteSize.format(diskSize)) but the layout needs at least \(ByteSize.format(minimum)) (\(minimum) bytes); use a larger disk or smaller partitions"
                )
            }
            let dataEnd = DiskLayout.alignDown(diskSize - DiskLayout.alignment)
            partitions[partitions.count - 1].size = dataEnd - partitions[partitions.count - 1].offset
            self.diskSize = diskSize
        } else {
            self.diskSize = minimum
        }
        self.partitions = partitions
    }

    public func partition(_ label: String) -> Partition? { partitions.first { $0.label == label } }

    public static func alignUp(_ value: Int64) -> Int64 { (value + alignment - 1) / alignment * alignment }
    public static func alignDown(_ value: Int64) -> Int64 { value / alignment * alignment }
}
