internal import CParted
import Synchronization

/// A GPT partition as libparted sees it: 512-byte sectors on an image file or disk.
public struct PartitionRecord: Sendable, Equatable {
    /// 1-based partition number.
    public var number: Int
    /// GPT partition name (what `PARTLABEL=` matches).
    public var name: String
    /// First sector.
    public var startSector: Int64
    /// Number of sectors.
    public var sectorCount: Int64
    /// Whether the ESP flag is set.
    public var isESP: Bool

    public init(number: Int, name: String, startSector: Int64, sectorCount: Int64, isESP: Bool) {
        self.number = number
        self.name = name
        self.startSector = startSector
        self.sectorCount = sectorCount
        self.isESP = isESP
    }
}
