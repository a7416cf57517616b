#ifndef CLINUXSHIMS_SHIM_H
#define CLINUXSHIMS_SHIM_H
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
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
#endif
