import Foundation
import MicromirrorKit
import SystemKit

/// The config partition: ext4, empty until `mm-image node write` puts the node file there.
struct ConfigWriter {
    var runner: CommandRunner

    func write(to image: String, size: Int64, uuid: GUID, hashSeed: GUID, epoch: Int64) async throws {
        try? FileManager.default.removeItem(atPath: image)
        let file = try RawFile.openForWriting(image, create: true, truncate: true)
        try file.truncate(to: size)
        try await runner.run(
            Tools.mkfsExt4,
            [
                "-q", "-F", "-L", DiskLayout.Label.config, "-U", uuid.description,
                "-E", "hash_seed=\(hashSeed),lazy_itable_init=0,root_owner=0:0", "-O", "^metadata_csum_seed",
                image,
            ],
            // e2fsprogs' own switch for a fixed timestamp in the superblock and inodes.
            environment: ["E2FSPROGS_FAKE_TIME": "\(epoch)"]
        )
    }
}
