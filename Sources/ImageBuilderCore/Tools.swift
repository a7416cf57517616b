import SystemKit

/// The build machine's tools, with the Debian package for each.
enum Tools {
    static let mmdebstrap = Tool("mmdebstrap", package: "mmdebstrap")
    static let mkfsErofs = Tool("mkfs.erofs", package: "erofs-utils")
    static let mkfsVfat = Tool("mkfs.vfat", package: "dosfstools")
    static let mkfsExt4 = Tool("mkfs.ext4", package: "e2fsprogs")
    static let mmd = Tool("mmd", package: "mtools")
    static let mcopy = Tool("mcopy", package: "mtools")
    static let cp = Tool("cp", package: "coreutils")
    static let chroot = Tool("chroot", package: "coreutils")
    static let touch = Tool("touch", package: "coreutils")
    static let git = Tool("git", package: "git")

    /// Everything `mm-image build` runs.
    static let build: [Tool] = [mmdebstrap, mkfsErofs, mkfsVfat, mkfsExt4, mmd, mcopy, cp, chroot, touch]
}
