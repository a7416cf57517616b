import Foundation
import ImageBuilderCore
import MicromirrorKit
import MicromirrorTestSupport
import Testing

@Suite("Image definitions and hardware profiles")
struct DefinitionTests {
    @Test("the shipped definition and both hardware profiles are valid")
    func shippedFilesLoad() throws {
        let definition = try ImageDefinition.load(path: TestSupport.packageRoot + "/images/micromirror.yaml")
        #expect(definition.name == "micromirror")
        #expect(definition.suite == "bookworm")
        #expect(definition.components.contains("non-free-firmware"))
        for package in ["systemd", "systemd-boot", "nftables", "rsync", "openssh-server", "ca-certificates", "chrony", "xfsprogs"] {
            #expect(definition.packages.contains(package), "\(package) missing from the appliance")
        }
        #expect(definition.enableUnits.contains("systemd-networkd.service"))
        #expect(definition.sizes.root == 1 << 30)
        let t620 = try HardwareProfile.load(path: TestSupport.packageRoot + "/hardware/hp-t620.yaml")
        #expect(t620.packages.contains("firmware-realtek") && t620.packages.contains("amd64-microcode"))
        #expect(t620.initramfsModules.contains("r8169") && t620.initramfsModules.contains("ahci"))
        #expect(t620.loadModules == ["sp5100_tco"])
        #expect(t620.watchdogSeconds == 30)
        #expect(!t620.kernelOptions.contains { $0.hasPrefix("console=ttyS") })
        let qemu = try HardwareProfile.load(path: TestSupport.packageRoot + "/hardware/qemu-x86_64.yaml")
        #expect(qemu.kernelOptions.contains("console=ttyS0,115200"))
        #expect(qemu.initramfsModules.contains("virtio_blk"))
    }

    @Test("a missing file is named")
    func missingFile() {
        #expect {
            try ImageDefinition.load(path: "/nonexistent/def.yaml")
        } throws: { error in
            "\(error)".contains("/nonexistent/def.yaml: file does not exist")
        }
    }

    @Test("a partition smaller than 1 MiB is a layout problem")
    func tinyPartition() throws {
        let text = """
            name: x
            distribution: {suite: bookworm}
            packages: [systemd]
            partitions: {esp: 256MiB, root: 1GiB, config: 512K, data: 64MiB}
            """
        let path = NSTemporaryDirectory() + "tiny-\(UUID().uuidString).yaml"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        #expect {
            try ImageDefinition.load(path: path)
        } throws: { error in
            "\(error)".contains("partitions: mm-config is 524288 bytes; every partition needs at least 1 MiB")
        }
    }
}
