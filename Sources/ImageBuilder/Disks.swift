import ArgumentParser
import Foundation
import ImageBuilderCore
import MicromirrorKit
import SystemKit

/// `mm-image disks`: the NOC's look before flashing. Every disk (or the ones named) with what
/// identifies it (size, model, serial, bus, partitions) and whether it may be flashed, or every
/// reason it may not (mounted, the running system's, part of a dm/LVM/RAID stack, read-only, a
/// partition, too small for the image). `mm-image flash` will refuse on the same grounds.
struct Disks: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List disks with what identifies them and whether an image may be written to them (and why not)."
    )

    @Argument(help: "Devices to look at (default: every disk the kernel lists, loop devices left out).") var devices: [String] = []
    @Option(help: "Image to be written: also refuse disks smaller than it.") var image: String?
    @Flag(help: "Print JSON lines.") var json = false

    struct Line: Encodable {
        var target: FlashTarget
        var refusals: [String]
    }

    func run() async throws {
        var imageSize: Int64 = 0
        if let image {
            guard let size = (try? FileManager.default.attributesOfItem(atPath: image)[.size] as? NSNumber)?.int64Value else {
                throw ValidationError("--image \(image): cannot read it")
            }
            imageSize = size
        }
        let names = devices.isEmpty
            ? ((try? FileManager.default.contentsOfDirectory(atPath: "/sys/block")) ?? []).filter { !$0.hasPrefix("loop") && !$0.hasPrefix("ram") && !$0.hasPrefix("zram") }.sorted().map { "/dev/" + $0 }
            : devices
        var failed = false
        for device in names {
            do {
                let target = try FlashTarget.inspect(device)
                let refusals = target.refusals(imageSize: imageSize)
                if json {
                    let encoder = JSONEncoder()
                    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
                    print(String(decoding: try encoder.encode(Line(target: target, refusals: refusals)), as: UTF8.self))
                } else {
                    print(target.summary)
                    print(refusals.isEmpty ? "  may be flashed" : refusals.map { "  refused: " + $0 }.joined(separator: "\n"))
                }
            } catch {
                FileHandle.standardError.write(Data("mm-image: \(error)\n".utf8))
                failed = true
            }
        }
        if failed { throw ExitCode(1) }
    }
}
