#!/usr/bin/env bash
# The whole test suite: installs its dependencies, builds the release programs the image needs,
# then runs every test (unit, integration with real tools, reproducible builds, QEMU boot).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build-programs.sh
export MM_BINARIES="$(swift build -c release --show-bin-path)"
# Integration tests build images here; start clean so every run is a cold build.
rm -rf .build/test-work
swift test "$@"
