internal import CParted
import Synchronization

/// Writes and reads GPT partition tables through libparted.
///
/// libparted keeps process-global state (its device cache and exception handler), so every call
/// goes through one lock.
public enum PartitionTable {
    private static let lock = Mutex<Void>(())

    /// Creates a fresh GPT on `path` (an image file or a block device) holding `partitions`
    /// at exactly the requested sectors, and commits it. Maps to `ped_disk_new_fresh`,
    /// `ped_partition_new`, `ped_disk_add_partition`, `ped_partition_set_name`, `ped_disk_commit_to_dev`.
    public static func createGPT(on path: String, partitions: [PartitionRequest]) throws(PartedError) {
        try withParted(path: path, operation: "writing a GPT") { device, fail throws(PartedError) in
            guard let gpt = ped_disk_type_get("gpt"), let disk = ped_disk_new_fresh(device, gpt) else {
                throw fail("creating an empty GPT")
            }
            defer { ped_disk_destroy(disk) }
            for request in partitions {
                let end = request.startSector + request.sectorCount - 1
                guard let part = ped_partition_new(disk, PED_PARTITION_NORMAL, nil, request.startSector, end) else {
                    throw fail("creating partition \(request.name)")
                }
                guard let constraint = ped_constraint_exact(&part.pointee.geom) else {
                    ped_partition_destroy(part)
                    throw fail("constraining partition \(request.name)")
                }
                defer { ped_constraint_destroy(constraint) }
                guard ped_disk_add_partition(disk, part, constraint) == 1 else {
                    ped_partition_destroy(part)
                    throw fail("adding partition \(request.name) at sectors \(request.startSector)-\(end)")
                }
                guard ped_partition_set_name(part, request.name) == 1 else { throw fail("naming partition \(request.name)") }
                if request.isESP, ped_partition_set_flag(part, PED_PARTITION_ESP, 1) != 1 {
                    throw fail("setting the ESP flag on \(request.name)")
                }
            }
            guard ped_disk_commit_to_dev(disk) == 1 else { throw fail("committing the partition table") }
        }
    }

    /// Reads the partitions of the GPT (or other table libparted knows) on `path`.
    public static func read(path: String) throws(PartedError) -> [PartitionRecord] {
        try withParted(path: path, operation: "reading the partition table") { device, fail throws(PartedError) in
            guard let disk = ped_disk_new(device) else { throw fail("reading the partition table") }
            defer { ped_disk_destroy(disk) }
            var records: [PartitionRecord] = []
            var part = ped_disk_next_partition(disk, nil)
            while let current = part {
                let kind = current.pointee.type.rawValue
                if current.pointee.num > 0,
                    kind & (PED_PARTITION_FREESPACE.rawValue | PED_PARTITION_METADATA.rawValue) == 0
                {
                    let name = ped_partition_get_name(current).map { String(cString: $0) } ?? ""
                    records.append(
                        PartitionRecord(
                            number: Int(current.pointee.num),
                            name: name,
                            startSector: current.pointee.geom.start,
                            sectorCount: current.pointee.geom.length,
                            isESP: ped_partition_get_flag(current, PED_PARTITION_ESP) == 1
                        )
                    )
                }
                part = ped_disk_next_partition(disk, current)
            }
            return records
        }
    }

    private static func withParted<T>(
        path: String,
        operation: String,
        _ body: (UnsafeMutablePointer<PedDevice>, (String) -> PartedError) throws(PartedError) -> T
    ) throws(PartedError) -> T {
        try lock.withLock { (_: inout Void) throws(PartedError) -> T in
            _ = drainMessages()
            ped_exception_set_handler(collectException)
            defer { ped_exception_set_handler(nil) }
            // ped_device_get consults a global cache; drop it afterwards so a rewritten file is re-read.
            guard let device = ped_device_get(path) else {
                throw PartedError(operation: operation, device: path, messages: drainMessages())
            }
            defer { ped_device_destroy(device) }
            return try body(device) { what in
                PartedError(operation: what, device: path, messages: drainMessages())
            }
        }
    }

    /// Messages collected by `collectException` since the last drain. Only called with `lock` held.
    private static func drainMessages() -> [String] {
        let taken = pending.withLock { messages in
            defer { messages.removeAll() }
            return messages
        }
        return taken
    }

    fileprivate static let pending = Mutex<[String]>([])
}

/// libparted's exception callback: record the message and let the call fail rather than prompt.
private func collectException(_ exception: UnsafeMutablePointer<PedException>?) -> PedExceptionOption {
    guard let exception else { return PED_EXCEPTION_UNHANDLED }
    let message = exception.pointee.message.map { String(cString: $0) } ?? "unknown libparted exception"
    PartitionTable.pending.withLock { $0.append(message) }
    let options = exception.pointee.options.rawValue
    // Warnings about a file not being a whole disk, or a backup header not at the end (a grown
    // device), are expected here: answer "ignore" where libparted offers it.
    if exception.pointee.type.rawValue <= PED_EXCEPTION_WARNING.rawValue,
        options & PED_EXCEPTION_IGNORE.rawValue != 0
    {
        return PED_EXCEPTION_IGNORE
    }
    return PED_EXCEPTION_UNHANDLED
}
