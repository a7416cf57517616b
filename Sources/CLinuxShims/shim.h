#ifndef CLINUXSHIMS_SHIM_H
#define CLINUXSHIMS_SHIM_H
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <sys/sysinfo.h>
#include <unistd.h>

// openat2(2) has no glibc wrapper and syscall(2) is variadic, which Swift cannot call.
// RESOLVE_BENEATH makes the kernel refuse any path that leaves dirfd: "..", absolute symlinks,
// symlinks pointing outside. Race-free, unlike realpath() followed by open().
static inline int CLinuxShims_openBeneath(int dirfd, const char *path, int flags) {
    struct open_how how = {
        .flags = (unsigned long long)flags,
        .mode = 0,
        .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS,
    };
    return (int)syscall(SYS_openat2, dirfd, path, &how, sizeof(how));
}

// The load averages from sysinfo(2), as doubles; 0 on success. (/proc/loadavg is hidden from
// services with ProcSubset=pid.)
static inline int CLinuxShims_loadAverages(double out[3]) {
    struct sysinfo info;
    if (sysinfo(&info) != 0) return -1;
    for (int i = 0; i < 3; i++) out[i] = (double)info.loads[i] / (double)(1 << SI_LOAD_SHIFT);
    return 0;
}
#endif
