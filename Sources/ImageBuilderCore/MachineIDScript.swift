/// An initramfs-tools `local-bottom` script that gives the node its persistent machine id before
/// PID 1 reads /etc/machine-id. The image ships an empty one; without this, journald files every
/// boot under a transient id and mm-firstboot installs the real one too late, so `journalctl -u`
/// finds nothing. The id lives on mm-config (`identity/machine-id`); on the very first boot this
/// makes one and stores it there first, and mm-firstboot keeps it.
///
/// Debian's initramfs has klibc tools only (no grep, tr, rm): validation and formatting are sh.
enum MachineIDScript {
    static let installPath = "/etc/initramfs-tools/scripts/local-bottom/micromirror-machine-id"

    static let text = #"""
    #!/bin/sh
    # micromirror: the node's machine id from mm-config into the new root, before PID 1 starts.
    PREREQ="micromirror-overlay"
    prereqs() { echo "$PREREQ"; }
    case "$1" in prereqs) prereqs; exit 0 ;; esac
    . /scripts/functions

    dev=/dev/disk/by-partlabel/mm-config
    mnt=/run/mm-config-initramfs
    file="$mnt/identity/machine-id"

    valid() {
        [ ${#1} -eq 32 ] || return 1
        case "$1" in *[!0-9a-f]*) return 1 ;; esac
        return 0
    }

    log_begin_msg "micromirror: machine id from mm-config"
    if [ ! -b "$dev" ]; then
        log_failure_msg "micromirror: no $dev: this boot gets a transient machine id"
        exit 0
    fi
    modprobe -q ext4
    mkdir -p "$mnt"
    if ! mount -t ext4 -o nodev,nosuid,noexec "$dev" "$mnt"; then
        log_failure_msg "micromirror: cannot mount $dev: this boot gets a transient machine id"
        exit 0
    fi
    id=""
    [ -f "$file" ] && read -r id < "$file"
    if ! valid "$id"; then
        # First boot (or a torn write): a random v4 UUID without dashes, stored on mm-config first.
        read -r uuid < /proc/sys/kernel/random/uuid
        old_ifs="$IFS"; IFS=-
        set -- $uuid
        IFS="$old_ifs"
        id="$1$2$3$4$5"
        mkdir -p "$mnt/identity"
        echo "$id" > "$file.new" && sync && mv "$file.new" "$file" && sync
        echo "micromirror: created machine id $id on mm-config"
    fi
    umount "$mnt"
    if valid "$id"; then
        echo "$id" > "${rootmnt}/etc/machine-id" || log_failure_msg "micromirror: cannot write ${rootmnt}/etc/machine-id"
    fi
    log_end_msg
    exit 0

    """#
}
