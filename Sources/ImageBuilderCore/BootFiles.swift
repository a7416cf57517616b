import Foundation
import MicromirrorKit
import SystemKit

/// The kernel and initrd found in the rootfs's /boot.
struct BootFiles {
    var kernel: String
    var initrd: String
    var kernelVersion: String

    static func find(in root: String) throws -> BootFiles {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: root + "/boot")) ?? []
        let kernels = names.filter { $0.hasPrefix("vmlinuz-") }.sorted()
        guard let kernel = kernels.last else {
            throw BuildError(stage: "rootfs", "no kernel in \(root)/boot: the hardware profile must list a kernel package (e.g. linux-image-amd64)")
        }
        let version = String(kernel.dropFirst("vmlinuz-".count))
        let initrd = "initrd.img-\(version)"
        guard names.contains(initrd) else { throw BuildError(stage: "rootfs", "no \(initrd) in \(root)/boot") }
        return BootFiles(kernel: root + "/boot/" + kernel, initrd: root + "/boot/" + initrd, kernelVersion: version)
    }
}
