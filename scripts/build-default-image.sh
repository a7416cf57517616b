#!/usr/bin/env bash
# The main job on the embedded default: installs what the build needs, builds the programs, and
# builds the signed default image for QEMU (development key created once at out/keys/dev.key).
#   scripts/build-default-image.sh [extra mm-image build options, e.g. --hardware hardware/hp-t620.yaml]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build-programs.sh
bin=$(swift build -c release --show-bin-path)
"$bin/mm-image" build "$@"
