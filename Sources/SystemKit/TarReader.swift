internal import CArchive
import Foundation

/// Reads a tar archive entry by entry with libarchive, streaming each entry's data.
public final class TarReader {
    private let archive: OpaquePointer
    private let path: String

    /// One entry's header.
    public struct Entry: Sendable {
        public var name: String
        public var size: Int64
        public var isRegularFile: Bool
    }

    /// Opens `path` for reading (tar formats only).
    public init(path: String) throws(ArchiveError) {
        guard let archive = archive_read_new() else {
            throw ArchiveError(operation: "allocating a tar reader for", path: path, message: "out of memory")
        }
        self.archive = archive
        self.path = path
        archive_read_support_format_tar(archive)
        guard archive_read_open_filename(archive, path, 1 << 20) == ARCHIVE_OK else {
            throw ArchiveError("opening", path, archive)
        }
    }

    deinit { archive_read_free(archive) }

    /// The next entry's header, or nil at the end of the archive.
    public func next() throws(ArchiveError) -> Entry? {
        var entry: OpaquePointer?
        let status = archive_read_next_header(archive, &entry)
        if status == ARCHIVE_EOF { return nil }
        guard status == ARCHIVE_OK || status == ARCHIVE_WARN, let entry else {
            throw ArchiveError("reading the next entry of", path, archive)
        }
        let name = archive_entry_pathname(entry).map { String(cString: $0) } ?? ""
        return Entry(
            name: name,
            size: archive_entry_size(entry),
            isRegularFile: archive_entry_filetype(entry) == 0o100000
        )
    }

    /// Streams the current entry's data to `body` in chunks.
    public func readData(_ body: (UnsafeRawBufferPointer) throws -> Void) throws {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 16)
        defer { buffer.deallocate() }
        while true {
            let count = archive_read_data(archive, buffer.baseAddress, buffer.count)
            if count == 0 { return }
            guard count > 0 else { throw ArchiveError("reading data from", path, archive) }
            try body(UnsafeRawBufferPointer(rebasing: buffer[0..<count]))
        }
    }

    /// Reads the current entry fully into memory, refusing anything larger than `limit` bytes.
    public func readAll(limit: Int) throws -> [UInt8] {
        var out: [UInt8] = []
        try readData { chunk in
            guard out.count + chunk.count <= limit else {
                throw ArchiveError(operation: "reading", path: path, message: "entry larger than \(limit) bytes")
            }
            out.append(contentsOf: chunk)
        }
        return out
    }
}
