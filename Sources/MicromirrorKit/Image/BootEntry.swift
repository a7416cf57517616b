import Foundation

/// A Boot Loader Specification type #1 entry for one slot, as systemd-boot reads it from
/// `/loader/entries/` on the ESP.
///
/// Boot counting lives in the file name: `micromirror-b+3.conf` has three tries left; systemd-boot
/// renames it before each try (`+2-1`, `+1-2`, `+0-3`), an entry with no tries left sorts last so
/// the other slot boots again, and `systemd-bless-boot` renames a good one to `micromirror-b.conf`.
/// Entries sort by `sort-key`, then by `version` newest first: the higher build boots first.
public struct BootEntry: Sendable, Equatable {
    public var slot: String
    public var title: String
    public var buildNumber: Int64
    public var options: String
    /// Boot-counting tries left, or nil for an entry without a counter (blessed, or the flashed image's own).
    public var triesLeft: Int?
    /// Tries already made (systemd-boot's `-N`), once it has counted one.
    public var triesDone: Int?

    public init(slot: String, title: String, buildNumber: Int64, options: String, triesLeft: Int? = nil, triesDone: Int? = nil) {
        self.slot = slot
        self.title = title
        self.buildNumber = buildNumber
        self.options = options
        self.triesLeft = triesLeft
        self.triesDone = triesDone
    }

    /// Where systemd-boot looks for entries, relative to the ESP's root.
    public static let directory = "/loader/entries"
    /// The slot's kernel and initrd, relative to the ESP's root.
    public static func kernelPath(slot: String) -> String { "/micromirror/\(slot)/vmlinuz" }
    public static func initrdPath(slot: String) -> String { "/micromirror/\(slot)/initrd.img" }

    public var fileName: String { Name(slot: slot, triesLeft: triesLeft, triesDone: triesDone).fileName }

    public var text: String {
        """
        title      \(title)
        version    \(buildNumber)
        sort-key   micromirror
        linux      \(Self.kernelPath(slot: slot))
        initrd     \(Self.initrdPath(slot: slot))
        options    root=PARTLABEL=\(DiskLayout.Label.root(slot: slot)) mm.slot=\(slot) \(options)

        """
    }

    /// The `key value` lines of an entry's text (`title`, `version`, `options`, …), values trimmed.
    public static func fields(text: String) -> [String: String] {
        var fields: [String: String] = [:]
        for line in text.split(separator: "\n") {
            let parts = line.split(maxSplits: 1, whereSeparator: { $0 == " " || $0 == "\t" })
            if parts.count == 2 { fields[String(parts[0])] = parts[1].trimmingCharacters(in: .whitespaces) }
        }
        return fields
    }

    /// What a file name in the entries directory says: its slot and counter; nil when it is not
    /// one of ours.
    public struct Name: Sendable, Equatable {
        public var slot: String
        public var triesLeft: Int?
        public var triesDone: Int?
        /// Counting is on and no try is left: systemd-boot will not pick it while another entry is good.
        public var exhausted: Bool { triesLeft == 0 }

        public init(slot: String, triesLeft: Int? = nil, triesDone: Int? = nil) {
            self.slot = slot
            self.triesLeft = triesLeft
            self.triesDone = triesDone
        }
        /// Counting is on: the entry has not been blessed yet.
        public var counting: Bool { triesLeft != nil }

        /// The file name that says this (`parse(fileName:)` read backwards).
        public var fileName: String {
            var name = "micromirror-\(slot)"
            if let triesLeft {
                name += "+\(triesLeft)"
                if let triesDone { name += "-\(triesDone)" }
            }
            return name + ".conf"
        }
    }

    public static func parse(fileName: String) -> Name? {
        guard fileName.hasPrefix("micromirror-"), fileName.hasSuffix(".conf") else { return nil }
        let core = fileName.dropFirst("micromirror-".count).dropLast(".conf".count)
        guard let plus = core.firstIndex(of: "+") else {
            return core.isEmpty || core.contains("-") ? nil : Name(slot: String(core))
        }
        let slot = String(core[..<plus])
        let counter = core[core.index(after: plus)...].split(separator: "-", omittingEmptySubsequences: false)
        guard !slot.isEmpty, (1...2).contains(counter.count), let left = Int(counter[0]), left >= 0 else { return nil }
        var done: Int?
        if counter.count == 2 {
            guard let value = Int(counter[1]), value >= 0 else { return nil }
            done = value
        }
        return Name(slot: slot, triesLeft: left, triesDone: done)
    }
}
