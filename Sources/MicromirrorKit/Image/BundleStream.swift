import SystemKit

/// Checks a bundle as its bytes arrive, in the order a download brings them: the manifest's
/// signature as soon as the first two entries are in (a few kilobytes), then each payload's size
/// and SHA-256 at the end of that payload. The same checks as `Bundle.verify`, in the same pass as
/// the download, so a tampered bundle is stopped early and a whole one needs no second read.
///
/// It reads the tar that `Bundle.write` makes (POSIX ustar headers, pax extended headers for
/// long names or sizes) and refuses anything else: other entry types, a header whose checksum
/// does not add up, data after the end-of-archive blocks.
public final class BundleStream {
    private let keyring: Keyring
    private let source: String
    private enum Stage {
        /// Collecting a 512-byte header.
        case header
        /// In an entry's data; `remaining` bytes of it to come, then `padding` zero bytes.
        case data(name: String, remaining: Int64, padding: Int)
        case padding(Int)
        /// In a pax extended header's records, which describe the next entry.
        case extended(remaining: Int, padding: Int)
        /// Past the first zero block: only zeros may follow.
        case end
    }
    private var stage = Stage.header
    private var header: [UInt8] = []
    private var collected: [UInt8] = []
    private var extended: [UInt8] = []
    private var overrides: (name: String?, size: Int64?) = (nil, nil)
    private var manifestBytes: [UInt8]?
    private var hasher: SHA256Hasher?
    private var entries = 0
    private var offset: Int64 = 0

    /// The manifest, once its signature has been checked against the keyring.
    public private(set) var manifest: Manifest?
    /// Payloads whose size and SHA-256 matched the manifest, in order.
    public private(set) var checkedPayloads: [String] = []

    /// `source` names the bundle in errors (a URL or a path).
    public init(keyring: Keyring, source: String) {
        self.keyring = keyring
        self.source = source
    }

    /// Takes the next bytes of the bundle. Throws a `VerificationError` naming the first check that
    /// failed, at the byte where it failed.
    public func feed(_ bytes: UnsafeRawBufferPointer) throws(VerificationError) {
        var rest = bytes[...]
        while !rest.isEmpty {
            switch stage {
            case .header:
                let take = min(512 - header.count, rest.count)
                header.append(contentsOf: rest.prefix(take))
                rest = rest.dropFirst(take)
                offset += Int64(take)
                if header.count == 512 { try headerComplete() }
            case .data(let name, let remaining, let padding):
                let take = Int(min(remaining, Int64(rest.count)))
                let chunk = UnsafeRawBufferPointer(rebasing: rest.prefix(take))
                if let hasher {
                    hasher.update(chunk)
                } else {
                    collected.append(contentsOf: chunk)
                }
                rest = rest.dropFirst(take)
                offset += Int64(take)
                let left = remaining - Int64(take)
                if left == 0 {
                    try entryComplete(name)
                    stage = padding > 0 ? .padding(padding) : .header
                } else {
                    stage = .data(name: name, remaining: left, padding: padding)
                }
            case .extended(let remaining, let padding):
                let take = min(remaining, rest.count)
                extended.append(contentsOf: rest.prefix(take))
                rest = rest.dropFirst(take)
                offset += Int64(take)
                if remaining == take {
                    try parseExtended()
                    stage = padding > 0 ? .padding(padding) : .header
                } else {
                    stage = .extended(remaining: remaining - take, padding: padding)
                }
            case .padding(let count):
                let take = min(count, rest.count)
                rest = rest.dropFirst(take)
                offset += Int64(take)
                stage = count == take ? .header : .padding(count - take)
            case .end:
                guard rest.allSatisfy({ $0 == 0 }) else {
                    throw failure("bundle", "data after the end of the archive (at byte \(offset))")
                }
                offset += Int64(rest.count)
                rest = rest[rest.endIndex...]
            }
        }
    }

    /// Call when the last byte has arrived: every payload the manifest names must have been seen.
    @discardableResult
    public func finish() throws(VerificationError) -> Manifest {
        guard let manifest else { throw failure("bundle", "ends after \(offset) bytes, before its manifest and signature") }
        switch stage {
        case .header where header.isEmpty, .end: break
        default: throw failure("bundle", "ends after \(offset) bytes, inside an entry")
        }
        if let missing = manifest.payloads.dropFirst(checkedPayloads.count).first {
            throw failure("payload \(missing.name)", "missing from \(source)")
        }
        return manifest
    }

    private func failure(_ check: String, _ message: String) -> VerificationError {
        VerificationError(check: check, message: check == "bundle" ? "\(source): \(message)" : message)
    }

    private func headerComplete() throws(VerificationError) {
        let block = header
        header = []
        if block.allSatisfy({ $0 == 0 }) {
            stage = .end
            return
        }
        let stored = Self.octal(block[148..<156])
        let sum = block.indices.reduce(0) { $0 + Int64((148..<156).contains($1) ? 32 : block[$1]) }
        guard stored == sum else {
            throw failure("bundle", "the tar header at byte \(offset - 512) is damaged (its checksum does not add up)")
        }
        let type = block[156]
        var size: Int64
        if block[124] & 0x80 != 0 {
            size = block[125..<136].reduce(Int64(0)) { $0 << 8 | Int64($1) }
        } else {
            guard let octal = Self.octal(block[124..<136]) else { throw failure("bundle", "the tar header at byte \(offset - 512) has no valid size") }
            size = octal
        }
        let padding = Int((512 - size % 512) % 512)
        if type == UInt8(ascii: "x") {
            guard size <= 64 << 10 else { throw failure("bundle", "a pax header of \(size) bytes at byte \(offset - 512)") }
            extended = []
            stage = size == 0 ? .header : .extended(remaining: Int(size), padding: padding)
            return
        }
        guard type == UInt8(ascii: "0") || type == 0 else {
            throw failure("bundle", "entry at byte \(offset - 512) is not a regular file (tar type \(Character(UnicodeScalar(type))))")
        }
        var name = Self.string(block[0..<100])
        if block[257..<262].elementsEqual("ustar".utf8) {
            let prefix = Self.string(block[345..<500])
            if !prefix.isEmpty { name = prefix + "/" + name }
        }
        if let long = overrides.name { name = long }
        if let long = overrides.size { size = long }
        overrides = (nil, nil)
        try entryStarts(name: name, size: size)
        stage = size == 0 ? .header : .data(name: name, remaining: size, padding: padding)
        if size == 0 { try entryComplete(name) }
    }

    /// Checks what an entry must be, from its place in the bundle, before any of its data is taken.
    private func entryStarts(name: String, size: Int64) throws(VerificationError) {
        entries += 1
        collected = []
        hasher = nil
        switch entries {
        case 1:
            guard name == Bundle.manifestName else { throw failure("bundle", "the first entry must be \(Bundle.manifestName), not \(name)") }
            guard size <= 1 << 20 else { throw failure("bundle", "\(Bundle.manifestName) is \(size) bytes (at most 1 MiB)") }
        case 2:
            guard name == Bundle.signatureName else { throw failure("bundle", "the second entry must be \(Bundle.signatureName), not \(name)") }
            guard size <= 4096 else { throw failure("bundle", "\(Bundle.signatureName) is \(size) bytes (at most 4 KiB)") }
        default:
            guard let manifest else { throw failure("bundle", "no manifest") }
            guard let payload = manifest.payloads.dropFirst(checkedPayloads.count).first, payload.name == name else {
                let wanted = manifest.payloads.dropFirst(checkedPayloads.count).first?.name ?? "the end of the bundle"
                throw failure("payload \(name)", "unexpected entry in \(source); expected \(wanted)")
            }
            guard size == payload.size else {
                throw failure("payload \(name)", "size is \(size) bytes, the manifest says \(payload.size)")
            }
            hasher = SHA256Hasher()
        }
    }

    private func entryComplete(_ name: String) throws(VerificationError) {
        switch entries {
        case 1:
            manifestBytes = collected
        case 2:
            let bytes = manifestBytes ?? []
            do {
                _ = try keyring.verify(signature: collected, message: bytes, what: "\(source): \(Bundle.manifestName)")
                manifest = try Manifest.parse(bytes, source: "\(source): \(Bundle.manifestName)")
            } catch let error as VerificationError {
                throw error
            } catch {
                throw failure("manifest", "\(source): \(error)")
            }
        default:
            guard let manifest, let hasher else { return }
            let payload = manifest.payloads[checkedPayloads.count]
            let digest = hasher.finalizeHex()
            guard digest == payload.sha256 else {
                throw failure("payload \(name)", "SHA-256 is \(digest), the manifest says \(payload.sha256)")
            }
            checkedPayloads.append(name)
        }
        collected = []
    }

    /// The records of a pax extended header (`LEN key=value\n`): a long `path` or a large `size`.
    private func parseExtended() throws(VerificationError) {
        var rest = extended[...]
        while let space = rest.firstIndex(of: UInt8(ascii: " ")), let length = Int(String(decoding: rest[rest.startIndex..<space], as: UTF8.self)),
            length > 0, length <= rest.count
        {
            let record = rest.prefix(length).dropFirst(space - rest.startIndex + 1).dropLast()
            rest = rest.dropFirst(length)
            guard let equals = record.firstIndex(of: UInt8(ascii: "=")) else { continue }
            let key = String(decoding: record[record.startIndex..<equals], as: UTF8.self)
            let value = String(decoding: record[(equals + 1)...], as: UTF8.self)
            switch key {
            case "path": overrides.name = value
            case "size":
                guard let size = Int64(value) else { throw failure("bundle", "a pax size that is not a number: \(value)") }
                overrides.size = size
            default: break
            }
        }
        guard rest.isEmpty else { throw failure("bundle", "a damaged pax header before byte \(offset)") }
    }

    private static func octal(_ field: ArraySlice<UInt8>) -> Int64? {
        let digits = field.drop { $0 == 32 }.prefix { $0 != 0 && $0 != 32 }
        guard !digits.isEmpty else { return nil }
        return Int64(String(decoding: digits, as: UTF8.self), radix: 8)
    }

    private static func string(_ field: ArraySlice<UInt8>) -> String {
        String(decoding: field.prefix { $0 != 0 }, as: UTF8.self)
    }
}
