internal import CParted
import Synchronization

/// What to create in a fresh GPT.
public struct PartitionRequest: Sendable {
    public var name: String
    public var startSector: Int64
    public var sectorCount: Int64
    public var isESP: Bool

    public init(name: String, startSector: Int64, sectorCount: Int64, isESP: Bool = false) {
        self.name = name
        self.startSector = startSector
        self.sectorCount = sectorCount
        self.isESP = isESP
    }
}
