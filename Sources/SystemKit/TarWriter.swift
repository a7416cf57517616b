internal import CArchive
import Foundation

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
