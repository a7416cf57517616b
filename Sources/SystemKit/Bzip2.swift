internal import CArchive
import Foundation

/// bzip2 compression through libarchive's raw format with its bzip2 filter (no second library):
/// what MirrorManager's check-in wants around its payload.
public enum Bzip2 {
    /// `bytes` as one bzip2 stream.
    public static func compress(_ bytes: [UInt8]) throws(ArchiveError) -> [UInt8] {
        guard let archive = archive_write_new() else { throw ArchiveError(operation: "allocating a bzip2 writer for", path: "memory", message: "out of memory") }
        defer { archive_write_free(archive) }
        // The raw format's output is the filter's: room for the worst case (bzip2 grows incompressible
        // input by about 1 %), plus headers.
        var output = [UInt8](repeating: 0, count: bytes.count + bytes.count / 50 + 4096)
        // libarchive keeps this pointer and updates it as it writes: it must outlive the calls.
        let used = UnsafeMutablePointer<Int>.allocate(capacity: 1)
        used.initialize(to: 0)
        defer { used.deallocate() }
        let status: Int32 = output.withUnsafeMutableBytes { buffer in
            guard archive_write_add_filter_bzip2(archive) == ARCHIVE_OK, archive_write_set_format_raw(archive) == ARCHIVE_OK,
                archive_write_set_bytes_in_last_block(archive, 1) == ARCHIVE_OK,
                archive_write_open_memory(archive, buffer.baseAddress, buffer.count, used) == ARCHIVE_OK
            else { return ARCHIVE_FATAL }
            guard let entry = archive_entry_new() else { return ARCHIVE_FATAL }
            defer { archive_entry_free(entry) }
            archive_entry_set_filetype(entry, 0o100000)
            archive_entry_set_pathname(entry, "data")
            guard archive_write_header(archive, entry) == ARCHIVE_OK else { return ARCHIVE_FATAL }
            let written = bytes.withUnsafeBytes { archive_write_data(archive, $0.baseAddress, $0.count) }
            guard written == bytes.count else { return ARCHIVE_FATAL }
            return archive_write_close(archive)
        }
        guard status == ARCHIVE_OK else { throw ArchiveError("bzip2-compressing \(bytes.count) bytes in", "memory", archive) }
        return Array(output[0..<used.pointee])
    }
}
