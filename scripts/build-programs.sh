#!/usr/bin/env bash
# Builds mm-image, mm-firstboot and mm-node as release binaries with the Swift runtime linked in
# statically (they run on the image without a Swift toolchain) and stripped.
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release --static-swift-stdlib -Xlinker -s "$@"
echo "build-programs: $(swift build -c release --show-bin-path)/{mm-image,mm-firstboot,mm-node}"
