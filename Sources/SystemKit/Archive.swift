internal import CArchive
import Foundation

/// A libarchive failure: the operation, the archive file and libarchive's message.
public struct ArchiveError: Error, Sendable, CustomStringConvertible {
    public var operation: String
    public var path: String
    public var message: String
    public var description: String { "\(operation) \(path): \(message)" }

    fileprivate init(_ operation: String, _ path: String, _ archive: OpaquePointer?) {
        self.operation = operation
        self.path = path
        self.message = archive.flatMap { archive_error_string($0) }.map { String(cString: $0) } ?? "unknown libarchive error"
    }

    public init(operation: String, path: String, message: String) {
        self.operation = operation
        self.path = path
        self.message = message
    }
}

/// Writes a POSIX tar (pax, restricted) with libarchive. Every header field is set explicitly,
/// so the same entries give the same bytes.
public final class TarWriter {
    private let archive: OpaquePointer
    private let path: String
    private var closed = false

    /// Creates (truncates) `path`.
    public init(path: String) throws(ArchiveError) {
        guard let archive = archive_write_new() else {
            throw ArchiveError(operation: "allocating a tar writer for", path: path, message: "out of memory")
        }
        self.archive = archive
        self.path = path
        guard archive_write_set_format_pax_restricted(archive) == ARCHIVE_OK,
            archive_write_open_filename(archive, path) == ARCHIVE_OK
        else { throw ArchiveError("creating", path, archive) }
    }

    deinit {
        if !closed { archive_write_close(archive) }
        archive_write_free(archive)
    }

    /// Adds a regular file entry named `name`, `size` bytes long, whose content `fill` writes
    /// through the `write` callback it is given (streamed: large payloads never sit in memory).
    public func addFile(
        name: String,
        size: Int64,
        mode: Int32 = 0o644,
        mtime: Int64,
        fill: ((UnsafeRawBufferPointer) throws -> Void) throws -> Void
    ) throws {
        guard let entry = archive_entry_new() else {
            throw ArchiveError(operation: "allocating an entry in", path: path, message: "out of memory")
        }
        defer { archive_entry_free(entry) }
        archive_entry_set_pathname(entry, name)
        archive_entry_set_size(entry, size)
        archive_entry_set_filetype(entry, 0o100000)  // AE_IFREG is a cast macro Swift cannot import
        archive_entry_set_perm(entry, mode_t(mode))
        archive_entry_set_mtime(entry, time_t(mtime), 0)
        archive_entry_set_uid(entry, 0)
        archive_entry_set_gid(entry, 0)
        archive_entry_set_uname(entry, "root")
        archive_entry_set_gname(entry, "root")
        guard archive_write_header(archive, entry) == ARCHIVE_OK else {
            throw ArchiveError("writing the header of \(name) into", path, archive)
        }
        var written: Int64 = 0
        try fill { chunk in
            guard chunk.count > 0 else { return }
            let result = archive_write_data(archive, chunk.baseAddress, chunk.count)
            guard result == chunk.count else { throw ArchiveError("writing \(name) into", self.path, self.archive) }
            written += Int64(result)
        }
        guard written == size else {
            throw ArchiveError(operation: "writing \(name) into", path: path, message: "wrote \(written) bytes, header says \(size)")
        }
    }

    /// Finishes the archive (end-of-archive blocks) and closes the file.
    public func finish() throws(ArchiveError) {
        closed = true
        guard archive_write_close(archive) == ARCHIVE_OK else { throw ArchiveError("closing", path, archive) }
    }
}

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
