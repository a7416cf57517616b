import Foundation
import MicromirrorKit
import SystemKit

/// The slots' boot files on the mounted ESP: each slot's kernel and initrd under its own names and
/// its BLS entry. The order of writes keeps an entry from ever pointing at something half-written:
/// the slot's old entry goes first, the entry with a try counter comes last, by rename.
public struct BootInstaller: Sendable {
    /// Where the ESP is mounted (`/efi` on a node).
    public var esp: String
    /// Tries a new slot gets before systemd-boot falls back to the other one.
    public var tries = 3

    public init(esp: String) { self.esp = esp }

    var entriesDirectory: String { esp + BootEntry.directory }

    /// Every entry file of ours, with what its name says.
    public func entries() -> [(file: String, name: BootEntry.Name)] {
        let files = (try? FileManager.default.contentsOfDirectory(atPath: entriesDirectory)) ?? []
        return files.sorted().compactMap { file in BootEntry.parse(fileName: file).map { (file, $0) } }
    }

    /// The entry of `slot`, if it has one.
    public func entry(slot: String) -> BootEntry.Name? {
        entries().first { $0.name.slot == slot }?.name
    }

    /// The `title` and `version` (the build number) an entry file holds; nil for what it lacks.
    public func describe(_ file: String) -> (title: String?, buildNumber: Int64?) {
        guard let text = try? String(contentsOfFile: entriesDirectory + "/" + file, encoding: .utf8) else { return (nil, nil) }
        let fields = BootEntry.fields(text: text)
        return (fields["title"], fields["version"].flatMap { Int64($0) })
    }

    /// Step one of installing into `slot`: nothing may boot it while it is rewritten.
    public func retire(slot: String) throws {
        for (file, name) in entries() where name.slot == slot {
            try Syscall.check("remove", entriesDirectory + "/" + file) { unlink(entriesDirectory + "/" + file) }
        }
        try Syscall.syncDirectory(entriesDirectory)
    }

    /// Marks `slot`'s counting entry bad (no tries left, as `systemd-bless-boot bad` would): the next
    /// boot takes the other slot. Returns the entry's new file name, or nil when it was not counting.
    @discardableResult
    public func markBad(slot: String) throws -> String? {
        guard let (file, name) = entries().first(where: { $0.name.slot == slot }), name.counting else { return nil }
        let bad = BootEntry.Name(slot: slot, triesLeft: 0, triesDone: name.triesDone ?? 0).fileName
        guard bad != file else { return bad }
        try AtomicFile.rename(entriesDirectory + "/" + file, to: entriesDirectory + "/" + bad)
        return bad
    }

    /// Last step: the slot's kernel and initrd in place, then its entry with a try counter.
    /// Returns the entry's file name.
    @discardableResult
    public func install(slot: String, kernel: String, initrd: String, manifest: Manifest) throws -> String {
        let directory = esp + "/micromirror/" + slot
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try Self.copy(kernel, to: esp + BootEntry.kernelPath(slot: slot))
        try Self.copy(initrd, to: esp + BootEntry.initrdPath(slot: slot))
        let entry = BootEntry(
            slot: slot, title: "\(manifest.name) \(manifest.version) (slot \(slot))", buildNumber: manifest.buildNumber,
            options: manifest.kernelCommandLine, triesLeft: tries
        )
        try FileManager.default.createDirectory(atPath: entriesDirectory, withIntermediateDirectories: true)
        try AtomicFile.write(entry.text, to: entriesDirectory + "/" + entry.fileName)
        return entry.fileName
    }

    /// Copies `source` to `target` through a temporary sibling, synced, renamed, directory synced.
    static func copy(_ source: String, to target: String) throws {
        guard let data = FileManager.default.contents(atPath: source) else { throw UpdateError("cannot read \(source)") }
        try AtomicFile.write(Array(data), to: target)
    }
}
