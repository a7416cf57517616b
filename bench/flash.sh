#!/usr/bin/env bash
# Flash benchmark: `mm-image flash` (checks the node file, the image's signature and block map and the
# drive, writes the mapped blocks with O_DIRECT, discards the rest, reads every range back past the page
# cache, moves the backup GPT, writes the node file) against `bmaptool copy` (mapped blocks, checksums
# while reading the image, no read-back) and `dd bs=4M oflag=direct conv=fsync` (everything, no check)
# of the same image to the same kind of target; then 3 drives at once in one `mm-image flash` against 3 in a row.
#   sudo bench/flash.sh [IMAGE PUBKEY]   (~5 minutes; default: the image scripts/build-default-image.sh built)
# Writes bench/results/flash-DATE.md and prints it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build-programs.sh >/dev/null
bin=$(swift build -c release --show-bin-path)
image=${1:-$(ls -t out/micromirror-qemu-x86_64-*/micromirror-qemu-x86_64-*.img 2>/dev/null | head -1)}
pubkey=${2:-out/keys/dev.pub}
[ -f "$image" ] || { echo "flash: no image; run scripts/build-default-image.sh first or pass IMAGE PUBKEY" >&2; exit 2; }
[ -f "$image.bmap" ] || { echo "flash: no block map at $image.bmap" >&2; exit 2; }
runs=${RUNS:-3}
size=$(stat -c %s "$image")

# Drives: loop devices (direct I/O, discard punches holes) on files in /var/tmp, 1 GiB larger than the image.
work=$(mktemp -d /var/tmp/mm-bench-flash.XXXXXX)
loops=()
cleanup() { for l in "${loops[@]}"; do losetup -d "$l" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
for i in 1 2 3; do
  truncate -s $((size + (1 << 30))) "$work/drive$i.img"
  loops+=("$(losetup --find --show --direct-io=on "$work/drive$i.img")")
done
node=nodes/example.yaml
timed() { /usr/bin/time -f "%e" -o "$work/time" "$@" >/dev/null 2>"$work/err" || { cat "$work/err" >&2; exit 1; }; cat "$work/time"; }
ours() { timed "$bin/mm-image" flash "$image" --pubkey "$pubkey" --device "${loops[0]}" --node "$node" --yes --inventory "$work/inventory.jsonl"; }
bmap() { timed bmaptool copy --bmap "$image.bmap" "$image" "${loops[0]}"; }
dd_all() { timed dd if="$image" of="${loops[0]}" bs=4M oflag=direct conv=fsync status=none; }

cat "$image" > /dev/null  # all three read the image from the page cache
ours >/dev/null
o=(); b=(); d=()
for _ in $(seq 1 "$runs"); do o+=("$(ours)"); b+=("$(bmap)"); d+=("$(dd_all)"); done
sequential=$(python3 -c "import sys; print(f'{sum(map(float, sys.argv[1:])):.2f}')" \
  "$(ours)" \
  "$(timed "$bin/mm-image" flash "$image" --pubkey "$pubkey" --device "${loops[1]}" --node "$node" --yes --inventory "$work/inventory.jsonl")" \
  "$(timed "$bin/mm-image" flash "$image" --pubkey "$pubkey" --device "${loops[2]}" --node "$node" --yes --inventory "$work/inventory.jsonl")")
three=$(timed "$bin/mm-image" flash "$image" --pubkey "$pubkey" --yes --inventory "$work/inventory.jsonl" \
  --device "${loops[0]}" --node "$node" --device "${loops[1]}" --node "$node" --device "${loops[2]}" --node "$node")
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
mo=$(median "${o[@]}"); mb=$(median "${b[@]}"); md=$(median "${d[@]}")
ratio() { python3 -c "print(f'{$1/$2:.2f}')"; }
mapped=$(python3 -c "import re,sys; t=open(sys.argv[1]).read(); print(int(re.search(r'<MappedBlocksCount> *(\d+)',t).group(1))*4096)" "$image.bmap")
mib() { python3 -c "print(f'{$1/1048576:.1f}')"; }
mkdir -p bench/results
out="bench/results/flash-$(date -u +%Y-%m-%d).md"
{
  echo "# Flash vs bmaptool and dd ($(date -u +%Y-%m-%d), $(nproc) cores, $(uname -r))"
  echo
  echo "Image \`$(basename "$image")\`: $(mib "$size") MiB, $(mib "$mapped") MiB mapped. Drives: loop devices (direct I/O) on files in /var/tmp. $runs runs each, medians."
  echo
  echo "| run | seconds | vs mm-image flash |"
  echo "|---|---|---|"
  echo "| mm-image flash (signature, block map, drive checks, write, discard, O_DIRECT read-back, GPT, node file) | $mo | 1.00 |"
  echo "| bmaptool copy (mapped blocks, checksums of the image while reading, no read-back) | $mb | $(ratio "$mb" "$mo") |"
  echo "| dd bs=4M oflag=direct conv=fsync (every byte, no check) | $md | $(ratio "$md" "$mo") |"
  echo "| mm-image flash, 3 drives in a row (3 runs) | $sequential | $(ratio "$sequential" "$mo") |"
  echo "| mm-image flash, 3 drives at once (one run) | $three | $(ratio "$three" "$mo") |"
  echo
  echo "All runs: ours ${o[*]}; bmaptool ${b[*]}; dd ${d[*]}."
} > "$out"
cat "$out"
