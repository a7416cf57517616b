import NIOCore

/// Small files held in memory by one event loop, with their response fields already encoded: the
/// files every client asks for again and again (repository metadata, indexes) cost one `fstatat`
/// instead of open, stat, read and close.
///
/// Never stale: every use first compares the file on disk with what was read (device, inode, size,
/// mtime and ctime to the nanosecond). A sync that replaces a file (rsync renames a new inode into
/// place) or an edit in place misses, and the file is opened afresh beneath the root. Only bytes
/// read through `MirrorFileResolver` (openat2 RESOLVE_BENEATH) are ever cached, so a symlink swapped
/// in later cannot make the cache serve anything from outside the root. A file's own mode is part
/// of what is compared (ctime moves on a chmod); the directories above it are checked again once
/// a second, so a directory closed to "others" goes dark within a second.
///
/// One per event-loop thread: no locks, and a connection only ever uses its own loop's cache
/// (hence `@unchecked Sendable`: it is handed around only to be used on that thread).
final class SmallFileCache: @unchecked Sendable {
    /// One cached file: what was read, its validators and its encoded fields.
    final class Entry {
        let facts: FileFacts
        let body: ByteBuffer
        /// What the entry costs against the budget.
        let cost: Int

        /// The last plain `200` response made from this entry (head and body), valid within its
        /// second (the `Date` header) for its keep-alive choice. Buffers are shared, never copied:
        /// any number of connections of this loop can be writing it at once.
        private var encoded: ByteBuffer?
        private var encodedSecond = -1
        private var encodedKeepAlive = true
        /// The second the directories above the file were last found public.
        var ancestorsCheckedSecond: Int

        init(facts: FileFacts, body: ByteBuffer, key: String, second: Int) {
            self.facts = facts
            self.body = body
            self.ancestorsCheckedSecond = second
            // Room for the body twice: as read, and inside an encoded response.
            self.cost = 2 * body.capacity + facts.fields.capacity + key.utf8.count + 768
        }

        func encodedResponse(second: Int, keepAlive: Bool) -> ByteBuffer? {
            guard encodedSecond == second, encodedKeepAlive == keepAlive else { return nil }
            return encoded
        }

        func remember(_ response: ByteBuffer, second: Int, keepAlive: Bool) {
            (encoded, encodedSecond, encodedKeepAlive) = (response, second, keepAlive)
        }
    }

    /// Files larger than this are sent with sendfile and never cached.
    static let maxFileSize: Int64 = 64 << 10

    /// Bytes the cache may hold; 0 turns it off.
    let budget: Int
    private var entries: [String: Entry] = [:]
    private(set) var bytes = 0
    /// The same event loop's counts, for hits and misses.
    private let tally: ServeMetrics.Tally

    init(budget: Int, tally: ServeMetrics.Tally) {
        self.budget = budget
        self.tally = tally
    }

    /// Whether a file of this size would be kept.
    func admits(size: Int64) -> Bool { budget > 0 && size <= Self.maxFileSize }

    /// The entry for `relative` (kept under `key` when not the path itself: files of another
    /// resolver) if the file on disk is still exactly the one cached (and still public).
    func entry(for relative: String, key: String? = nil, resolver: MirrorFileResolver, second: Int) -> Entry? {
        guard budget > 0 else { return nil }
        let key = key ?? relative
        guard let entry = entries[key] else {
            tally.cacheMiss()
            return nil
        }
        guard resolver.currentInfo(relative: relative) == entry.facts.info,
            entry.ancestorsCheckedSecond == second || resolver.ancestorsArePublic(relative)
        else {
            remove(key)
            tally.cacheMiss()
            return nil
        }
        entry.ancestorsCheckedSecond = second
        tally.cacheHit()
        return entry
    }

    func insert(_ entry: Entry, for relative: String) {
        guard budget > 0, entry.cost <= budget else { return }
        remove(relative)
        // Evict in the dictionary's order until the newcomer fits: cheap, and a hot file that goes
        // is back after its next request.
        while bytes + entry.cost > budget, let victim = entries.first {
            remove(victim.key)
        }
        entries[relative] = entry
        bytes += entry.cost
    }

    private func remove(_ relative: String) {
        if let old = entries.removeValue(forKey: relative) { bytes -= old.cost }
    }

    var count: Int { entries.count }
}
