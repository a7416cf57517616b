internal import CBlkid
import Foundation

/// Owns a `blkid_probe`; frees it in `deinit`.
public final class BlockProbe {
    private let probe: blkid_probe
    private let descriptor: Int32
    private let path: String

    /// Opens `path` read-only and limits probing to `length` bytes starting at `offset` (0 = to the end).
    public init(path: String, offset: Int64 = 0, length: Int64 = 0) throws(BlkidError) {
        let fd: Int32
        do { fd = try Syscall.open(path, O_RDONLY) } catch { throw BlkidError(description: "cannot open \(path): \(String(cString: strerror(error.code)))") }
        guard let probe = blkid_new_probe() else {
            Syscall.close(fd)
            throw BlkidError(description: "libblkid could not allocate a probe for \(path)")
        }
        guard blkid_probe_set_device(probe, fd, offset, length) == 0 else {
            blkid_free_probe(probe)
            Syscall.close(fd)
            throw BlkidError(description: "libblkid could not use \(path) at offset \(offset)")
        }
        self.probe = probe
        self.descriptor = fd
        self.path = path
    }

    deinit {
        blkid_free_probe(probe)
        Syscall.close(descriptor)
    }

    /// Probes for a filesystem superblock (`blkid_do_safeprobe`). Returns an empty result when
    /// nothing is there; throws when libblkid finds conflicting signatures or cannot read.
    public func superblocks() throws(BlkidError) -> ProbeResult {
        blkid_probe_enable_superblocks(probe, 1)
        blkid_probe_set_superblocks_flags(
            probe,
            Int32(BLKID_SUBLKS_LABEL | BLKID_SUBLKS_UUID | BLKID_SUBLKS_TYPE | BLKID_SUBLKS_VERSION | BLKID_SUBLKS_USAGE)
        )
        blkid_probe_enable_partitions(probe, 0)
        let status = blkid_do_safeprobe(probe)
        switch status {
        case 0:
            var values: [String: String] = [:]
            let count = blkid_probe_numof_values(probe)
            for index in 0..<count {
                var name: UnsafePointer<CChar>?
                var data: UnsafePointer<CChar>?
                var size: Int = 0
                if blkid_probe_get_value(probe, index, &name, &data, &size) == 0, let name, let data {
                    values[String(cString: name)] = String(cString: data)
                }
            }
            return ProbeResult(values: values)
        case 1:
            return ProbeResult(values: [:])
        case -2:
            throw BlkidError(description: "\(path): conflicting filesystem signatures")
        default:
            throw BlkidError(description: "\(path): libblkid could not probe")
        }
    }
}

extension BlockProbe {
    /// The block device whose GPT partition is named `label` (`PARTLABEL=`), as libblkid finds it
    /// (udev's links, else a scan of the devices); nil when there is none.
    public static func device(partitionLabel label: String) -> String? {
        guard let found = blkid_evaluate_tag("PARTLABEL", label, nil) else { return nil }
        defer { free(found) }
        return String(cString: found)
    }
}
