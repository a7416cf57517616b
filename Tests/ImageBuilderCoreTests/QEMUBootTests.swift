import Foundation
import Testing

/// The real image boots under QEMU (TCG) + OVMF through systemd-boot to multi-user, and reports
/// on its serial console which slot it booted, with no failed units.
@Suite("QEMU boot")
struct QEMUBootTests {
    @Test("the default image boots slot A to multi-user with no failed units")
    func bootsSlotA() async throws {
        let a = try await BuiltImage.shared.artifacts()
        let log = try TestSupport.scratch("qemu") + "/serial.log"
        let result = try TestSupport.run(
            TestSupport.packageRoot + "/scripts/qemu-boot.sh", [a.image, "--expect-slot", "a", "--timeout", "600", "--log", log]
        )
        #expect(result.status == 0, "boot failed:\n\(result.combined.suffix(4000))")
        // The firmware writes bytes that are not UTF-8: decode leniently.
        let console = String(decoding: (try? Data(contentsOf: URL(fileURLWithPath: log))) ?? Data(), as: UTF8.self)
        #expect(console.contains("micromirror: tmpfs overlay on the read-only root"))
        #expect(console.contains("micromirror-boot: slot=a root=mm-root-a image=micromirror version=0.1.0 build=\(BuiltImage.sourceDateEpoch)"))
    }
}
