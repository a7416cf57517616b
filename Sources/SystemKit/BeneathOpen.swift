import CLinuxShims
import Glibc

/// openat2(2) with `RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS`: the kernel refuses any path that
/// would leave `directory` (`..`, absolute symlinks, symlinks pointing outside), with no window
/// between checking a path and opening it.
public enum BeneathOpen {
    /// `O_PATH` (a descriptor only to stat or resolve through), which Swift's Glibc does not export.
    public static let pathOnly: Int32 = 0o10_000_000

    /// Opens `path` beneath the directory `directory`; the descriptor, or -1 with `errno` set
    /// (`ENOSYS` on kernels before 5.6, which have no openat2).
    public static func open(_ directory: Int32, _ path: UnsafePointer<CChar>, flags: Int32) -> Int32 {
        CLinuxShims_openBeneath(directory, path, flags)
    }
}
