#!/usr/bin/env bash
# Update apply benchmark: `mm-node update apply --bundle` (checks the signature and every hash,
# writes the root payload into the inactive slot with O_DIRECT, reads it back past the page cache
# and compares) against `dd bs=4M oflag=direct conv=fsync` of the same payload to the same partition.
#   sudo bench/update-apply.sh [BUNDLE PUBKEY]   (~3 minutes; default: the image that
#                                                  scripts/build-default-image.sh built under out/)
# Writes bench/results/update-apply-DATE.md and prints it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build-programs.sh >/dev/null
bin=$(swift build -c release --show-bin-path)
bundle=${1:-$(ls -t out/micromirror-qemu-x86_64-*/micromirror-qemu-x86_64-*.mmb 2>/dev/null | head -1)}
pubkey=${2:-out/keys/dev.pub}
[ -f "$bundle" ] || { echo "update-apply: no bundle; run scripts/build-default-image.sh first or pass BUNDLE PUBKEY" >&2; exit 2; }
[ -f "$pubkey" ] || { echo "update-apply: no public key at $pubkey" >&2; exit 2; }
runs=${RUNS:-3}

# A disk with two slots on a file (on the same filesystem as the bundle, not tmpfs): the updater
# finds slot b by its PARTLABEL, as on a node.
work=$(mktemp -d /var/tmp/mm-bench-update.XXXXXX)
loop=""
cleanup() { [ -n "$loop" ] && losetup -d "$loop" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
truncate -s 2200M "$work/disk.img"
sgdisk -q -n 1:2048:+1M -c 1:mm-root-a -n 2:0:+2G -c 2:mm-root-b "$work/disk.img" >/dev/null
loop=$(losetup --find --show --partscan --direct-io=on "$work/disk.img")
udevadm settle 2>/dev/null || true
slot="${loop}p2"
[ -b "$slot" ] || { echo "update-apply: $slot did not appear" >&2; exit 1; }

# The running node as the updater sees it: identity (one build older, same hardware), keyring, ESP.
manifest=$(tar -xOf "$bundle" manifest.json)
build=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["buildNumber"])' "$manifest")
hardware=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["hardware"])' "$manifest")
root_size=$(python3 -c 'import json,sys; print([p["size"] for p in json.loads(sys.argv[1])["payloads"] if p["name"]=="root.erofs"][0])' "$manifest")
mkdir -p "$work/keys" "$work/esp/loader/entries" "$work/data"
cp "$pubkey" "$work/keys/release.pub"
printf '{"name":"micromirror","version":"0","buildNumber":%s,"hardware":"%s"}\n' "$((build - 1))" "$hardware" > "$work/identity.json"
echo "mm.slot=a root=PARTLABEL=mm-root-a" > "$work/cmdline"
tar -xf "$bundle" -C "$work" root.erofs
payload="$work/root.erofs"

apply() {
  rm -rf "$work/esp/loader/entries"/* "$work/esp/micromirror" "$work/data/state"
  echo "title flashed" > "$work/esp/loader/entries/micromirror-a.conf"
  "$bin/mm-node" update apply --bundle "$bundle" --esp "$work/esp" --data "$work/data" --keyring "$work/keys" \
    --identity "$work/identity.json" --cmdline "$work/cmdline" --machine-id /dev/null >/dev/null 2>"$work/apply.err" \
    || { cat "$work/apply.err" >&2; exit 1; }
}
dd_write() { dd if="$payload" of="$slot" bs=4M oflag=direct conv=fsync status=none; }
timed() {  # prints "seconds max-rss-KiB"
  /usr/bin/time -f "%e %M" -o "$work/time" "$@"
  cat "$work/time"
}

# Warm the page cache with the bundle and the payload once (both tools then read from memory,
# and both write to the same partition with O_DIRECT: the comparison is the write path).
cat "$bundle" "$payload" > /dev/null
apply; dd_write
ours=(); theirs=(); rss=()
for _ in $(seq 1 "$runs"); do
  read -r s m < <(timed apply); ours+=("$s"); rss+=("$m")
  read -r s _ < <(timed dd_write); theirs+=("$s")
done
# What a slot write leaves is what was signed.
cmp -n "$root_size" "$payload" "$slot" >/dev/null || { echo "update-apply: slot b differs from the payload" >&2; exit 1; }

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
mo=$(median "${ours[@]}"); mt=$(median "${theirs[@]}"); mr=$(median "${rss[@]}")
ratio=$(python3 -c "print(f'{$mo/$mt:.2f}')")
bundle_bytes=$(stat -c %s "$bundle")
mib() { python3 -c "print(f'{$1/1048576:.1f}')"; }
mkdir -p bench/results
out="bench/results/update-apply-$(date -u +%Y-%m-%d).md"
{
  echo "# Update apply vs dd ($(date -u +%Y-%m-%d), $(nproc) cores, $(uname -r))"
  echo
  echo "Bundle \`$(basename "$bundle")\`: $(mib "$bundle_bytes") MiB; root payload $(mib "$root_size") MiB. Slot: a partition of a loop device (direct I/O) on a file in /var/tmp. $runs runs each, medians."
  echo
  echo "| run | seconds | ratio |"
  echo "|---|---|---|"
  echo "| dd bs=4M oflag=direct conv=fsync (payload only, no checks) | $mt | 1.00 |"
  echo "| mm-node update apply --bundle (signature, every hash, write, fsync, O_DIRECT read-back, ESP files, entry) | $mo | **$ratio** (goal ≤ 1.2) |"
  echo
  echo "mm-node peak RSS: $(python3 -c "print(f'{$mr/1024:.1f}')") MiB. All runs: ours ${ours[*]}; dd ${theirs[*]}."
} > "$out"
cat "$out"
