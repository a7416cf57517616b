#!/usr/bin/env bash
# The whole test suite: installs its dependencies, builds the release programs the image needs,
# then runs every test (unit, integration with real tools, reproducible builds, QEMU boot).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
# The suite builds several images and QEMU disks (about 12 GiB at its peak, measured in a
# fresh-clone run): say so at once on a machine too full for it, rather than as a few hundred
# failures about free space (CI once ran on a disk that earlier runs' leftovers had filled).
need_gib=${MM_TEST_NEED_GIB:-16}
free_gib=$(( $(df --output=avail -B1G . | tail -1) ))
echo "test: ${free_gib} GiB free on $(df --output=target . | tail -1) (the suite needs about ${need_gib})"
if [ "$free_gib" -lt "$need_gib" ]; then
  echo "test: not enough free disk: ${free_gib} GiB free, ${need_gib} GiB needed; free space (old clones, .build/test-work of earlier runs, /var/tmp/mm-*) and run again" >&2
  exit 1
fi
scripts/build-programs.sh
export MM_BINARIES="$(swift build -c release --show-bin-path)"
# Integration tests build images here; start clean so every run is a cold build, and leave no
# gigabytes behind (MM_KEEP_TEST_WORK=1 keeps them to look at).
rm -rf .build/test-work
if [ -z "${MM_KEEP_TEST_WORK:-}" ]; then trap 'rm -rf .build/test-work' EXIT; fi
swift test "$@"
