import Foundation
import SystemKit

/// Writes a block map in bmap-tools' XML format 2.0, so `bmaptool copy` flashes only the blocks
/// that hold data and checks each range's SHA-256 on the way.
public enum BlockMap {
    public static let blockSize: Int64 = 4096

    /// The mapped block ranges of `image` (from its holes), each as inclusive block numbers.
    public static func mappedBlocks(of image: RawFile) throws -> [ClosedRange<Int64>] {
        var blocks: [ClosedRange<Int64>] = []
        for range in try image.dataRanges() {
            let first = range.lowerBound / blockSize
            let last = (range.upperBound + blockSize - 1) / blockSize - 1
            if let previous = blocks.last, previous.upperBound + 1 >= first {
                blocks[blocks.count - 1] = previous.lowerBound...max(previous.upperBound, last)
            } else {
                blocks.append(first...last)
            }
        }
        return blocks
    }

    /// The bmap XML for `image`, with a checksum over each mapped range and over the file itself.
    public static func generate(for image: RawFile, progress: ((Int64) -> Void)? = nil) throws -> String {
        let size = try image.size()
        let ranges = try mappedBlocks(of: image)
        let totalBlocks = (size + blockSize - 1) / blockSize
        var mapped: Int64 = 0
        var lines: [String] = []
        var hashed: Int64 = 0
        for range in ranges {
            let offset = range.lowerBound * blockSize
            let length = min((range.upperBound + 1) * blockSize, size) - offset
            let digest = try image.sha256(offset: offset, length: length) { progress?(hashed + $0) }
            hashed += length
            mapped += range.count.toInt64
            let text = range.lowerBound == range.upperBound ? "\(range.lowerBound)" : "\(range.lowerBound)-\(range.upperBound)"
            lines.append("        <Range chksum=\"\(digest)\"> \(text) </Range>")
        }
        let placeholder = String(repeating: "0", count: 64)
        func document(checksum: String) -> String {
            """
            <?xml version="1.0" ?>
            <!-- Block map for bmaptool (format 2.0), written by mm-image. -->
            <bmap version="2.0">
                <ImageSize> \(size) </ImageSize>
                <BlockSize> \(blockSize) </BlockSize>
                <BlocksCount> \(totalBlocks) </BlocksCount>
                <MappedBlocksCount> \(mapped) </MappedBlocksCount>
                <ChecksumType> sha256 </ChecksumType>
                <BmapFileChecksum> \(checksum) </BmapFileChecksum>
                <BlockMap>
            \(lines.joined(separator: "\n"))
                </BlockMap>
            </bmap>

            """
        }
        // bmaptool checks the file's own SHA-256 computed with the checksum field zeroed.
        let checksum = SHA256Hasher.hex(of: Array(document(checksum: placeholder).utf8))
        return document(checksum: checksum)
    }
}

extension Int {
    var toInt64: Int64 { Int64(self) }
}
