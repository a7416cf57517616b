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

extension BlockMap {
    /// One mapped range of a block map: bytes `offset..<offset+length` of the image, and their SHA-256.
    public struct Range: Sendable, Equatable {
        public var offset: Int64
        public var length: Int64
        public var sha256: String

        public init(offset: Int64, length: Int64, sha256: String) {
            self.offset = offset
            self.length = length
            self.sha256 = sha256
        }
    }

    /// A block map read back: the image's size and its mapped ranges.
    public struct Parsed: Sendable, Equatable {
        public var imageSize: Int64
        public var ranges: [Range]
        /// Bytes in mapped ranges.
        public var mappedBytes: Int64 { ranges.reduce(0) { $0 + $1.length } }

        public init(imageSize: Int64, ranges: [Range]) {
            self.imageSize = imageSize
            self.ranges = ranges
        }
    }

    /// Reads a bmap (format 2.0, sha256, as `generate` writes it and bmaptool reads it); `file`
    /// names it in errors.
    public static func parse(_ text: String, file: String) throws(LayoutError) -> Parsed {
        func value(_ tag: String) -> String? {
            guard let open = text.range(of: "<\(tag)>"), let close = text.range(of: "</\(tag)>", range: open.upperBound..<text.endIndex) else { return nil }
            return text[open.upperBound..<close.lowerBound].trimmingCharacters(in: .whitespaces)
        }
        guard let size = value("ImageSize").flatMap(Int64.init), let block = value("BlockSize").flatMap(Int64.init), block > 0 else {
            throw LayoutError("\(file): not a block map (no ImageSize or BlockSize)")
        }
        guard value("ChecksumType") == "sha256" else { throw LayoutError("\(file): only sha256 block maps are read") }
        var ranges: [Range] = []
        var rest = Substring(text)
        while let start = rest.range(of: "<Range chksum=\"") {
            let afterQuote = rest[start.upperBound...]
            guard let quote = afterQuote.firstIndex(of: "\""), let close = afterQuote.range(of: "</Range>"),
                let gt = afterQuote[quote...].firstIndex(of: ">"), gt < close.lowerBound
            else { throw LayoutError("\(file): a Range element is malformed") }
            let digest = String(afterQuote[..<quote])
            let span = afterQuote[afterQuote.index(after: gt)..<close.lowerBound].trimmingCharacters(in: .whitespaces)
            let bounds = span.split(separator: "-").map { Int64($0.trimmingCharacters(in: .whitespaces)) }
            guard digest.count == 64, (1...2).contains(bounds.count), let first = bounds.first ?? nil, let last = bounds.last ?? nil, first <= last else {
                throw LayoutError("\(file): bad range \(span)")
            }
            let offset = first * block
            let end = min((last + 1) * block, size)
            guard offset < end else { throw LayoutError("\(file): range \(span) lies beyond the image's \(size) bytes") }
            ranges.append(Range(offset: offset, length: end - offset, sha256: digest))
            rest = afterQuote[close.upperBound...]
        }
        return Parsed(imageSize: size, ranges: ranges)
    }
}

extension Int {
    var toInt64: Int64 { Int64(self) }
}
