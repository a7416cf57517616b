#!/usr/bin/env bash
# Image build benchmark: cold and warm (binaries-only change) `mm-image build` of the default
# image, per stage, against the floor on the same machine: mmdebstrap alone installing the same
# package set. Writes a Markdown table to bench/results/image-build-<date>.md and prints it.
#
#   bench/image-build.sh            (needs root, network to the Debian mirror, ~5 minutes)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh >/dev/null
scripts/build-programs.sh >/dev/null
bin=$(swift build -c release --show-bin-path)
work=$(mktemp -d /var/tmp/mm-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
export SOURCE_DATE_EPOCH=1763700000

# The exact package list mm-image installs: the appliance's plus the hardware profile's.
packages=$(python3 - <<'PY'
import yaml
d = yaml.safe_load(open("images/micromirror.yaml"))
h = yaml.safe_load(open("hardware/qemu-x86_64.yaml"))
pk = d["packages"] + [p for p in h.get("packages", []) if p not in d["packages"]]
print(",".join(pk))
PY
)
suite=bookworm
# The same apt sources mm-image derives from this machine (its own Debian sources, main + non-free-firmware).
awk 'BEGIN{RS="";ORS="\n\n"} /Types: deb/ && /Suites: bookworm/ {gsub(/Components: [^\n]*/,"Components: main non-free-firmware"); print}' \
  /etc/apt/sources.list.d/*.sources > "$work/sources"

now() { date +%s.%N; }
elapsed() { python3 -c "print(f'{$2 - $1:.1f}')"; }

echo "bench: floor: mmdebstrap alone" >&2
t0=$(now)
mmdebstrap --quiet --variant=minbase --mode=root --format=directory --include="$packages" "$suite" "$work/floor" "$work/sources"
t1=$(now)
floor=$(elapsed "$t0" "$t1")
floor_size=$(du -sb "$work/floor" | cut -f1)
rm -rf "$work/floor"

"$bin/mm-image" keygen --out "$work/key" >/dev/null
build() {  # build LABEL BINARIES -> prints total seconds; stage lines into $work/LABEL.log
  local label=$1 binaries=$2
  local s=$(now)
  "$bin/mm-image" build --key "$work/key.key" --out "$work/out" --cache "$work/cache" --binaries "$binaries" 2>"$work/$label.log" >/dev/null
  local e=$(now)
  elapsed "$s" "$e"
}
echo "bench: cold build (empty cache)" >&2
cold=$(build cold "$bin")
echo "bench: warm build (one binary changed)" >&2
mkdir -p "$work/bin2"
cp "$bin"/mm-image "$bin"/mm-firstboot "$bin"/mm-node "$work/bin2/"
printf 'x' >> "$work/bin2/mm-node"   # a different binary, still runnable
warm=$(build warm "$work/bin2")

img=$(ls "$work"/out/*/*.img)
bmap="$img.bmap"
mapped=$(python3 -c "import re;t=open('$bmap').read();print(int(re.search(r'<MappedBlocksCount> (\d+)',t).group(1))*4096)")
bundle=$(ls "$work"/out/*/*.mmb)
mib() { python3 -c "print(f'{$1/1048576:.0f} MiB')"; }

stages() {  # stage table from a build log
  grep -E '^\[[0-9]+/[0-9]+\]' "$work/$1.log" | sed -E 's/^\[[0-9]+\/[0-9]+\] ([^:]+):.*\(([0-9.]+) s\)$/\1|\2/'
}
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')
out="bench/results/image-build-$(date +%Y-%m-%d).md"
mkdir -p bench/results
{
  echo "# Image build benchmark, $(date -u +%Y-%m-%d)"
  echo
  echo "Machine: $cpu, $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB. Command: \`bench/image-build.sh\`."
  echo
  echo "| run | seconds | ratio to floor |"
  echo "|---|---|---|"
  echo "| floor: mmdebstrap alone, same packages | $floor | 1.00 |"
  echo "| mm-image build, cold (empty cache) | $cold | $(python3 -c "print(f'{$cold/$floor:.2f}')") |"
  echo "| mm-image build, warm (one binary changed) | $warm | $(python3 -c "print(f'{$warm/$floor:.2f}')") |"
  echo
  echo "| stage | cold s | warm s |"
  echo "|---|---|---|"
  paste -d'|' <(stages cold) <(stages warm | cut -d'|' -f2) | sed 's/^/| /; s/$/ |/'
  echo
  echo "| size | bytes |"
  echo "|---|---|"
  echo "| mmdebstrap tree (floor) | $(mib $floor_size) |"
  echo "| raw disk image | $(mib $(stat -c %s "$img")) |"
  echo "| mapped (what bmaptool writes) | $(mib $mapped) |"
  echo "| update bundle (.mmb) | $(mib $(stat -c %s "$bundle")) |"
} | tee "$out"
