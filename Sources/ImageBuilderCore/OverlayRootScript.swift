/// An initramfs-tools `local-bottom` script that puts a tmpfs overlay on top of the read-only erofs
/// root. Debian's initramfs-tools does not implement `systemd.volatile=overlay` (that needs a
/// systemd initrd), so without this every service that wants to write to /var, /tmp or /etc fails.
/// The root itself is never written; a reboot returns everything to exactly the image.
enum OverlayRootScript {
    static let installPath = "/etc/initramfs-tools/scripts/local-bottom/micromirror-overlay"
    static let hookPath = "/etc/initramfs-tools/hooks/micromirror"

    /// An initramfs-tools hook forcing the modules the root needs (erofs, overlay, the disk and NIC
    /// drivers of the hardware) into the initramfs. Installed before the kernel package, so the
    /// kernel's own postinst builds the right initramfs once (no second `update-initramfs`).
    static func hook(modules: [String]) -> String {
        """
        #!/bin/sh
        # micromirror: modules the read-only erofs root and this hardware need at boot.
        PREREQ=""
        prereqs() { echo "$PREREQ"; }
        case "$1" in prereqs) prereqs; exit 0 ;; esac
        . /usr/share/initramfs-tools/hook-functions
        for module in \(modules.joined(separator: " ")); do
            force_load "$module"
        done

        """
    }

    static let text = #"""
    #!/bin/sh
    # micromirror: tmpfs overlay over the read-only erofs root. mm.overlay=0 skips it (debugging).
    PREREQ=""
    prereqs() { echo "$PREREQ"; }
    case "$1" in prereqs) prereqs; exit 0 ;; esac
    . /scripts/functions

    for arg in $(cat /proc/cmdline); do
        case "$arg" in mm.overlay=0) exit 0 ;; esac
    done

    log_begin_msg "micromirror: tmpfs overlay on the read-only root"
    modprobe -q overlay
    mkdir -p /run/mm-root/lower /run/mm-root/rw
    mount -t tmpfs -o mode=0755,size=50% mm-root-rw /run/mm-root/rw || panic "micromirror: cannot mount tmpfs for the root overlay"
    mkdir -p /run/mm-root/rw/upper /run/mm-root/rw/work
    mount -n -o move "${rootmnt}" /run/mm-root/lower || panic "micromirror: cannot move the root to /run/mm-root/lower"
    mount -t overlay -o lowerdir=/run/mm-root/lower,upperdir=/run/mm-root/rw/upper,workdir=/run/mm-root/rw/work \
        mm-root "${rootmnt}" || panic "micromirror: cannot mount the root overlay"
    log_end_msg
    exit 0

    """#
}
