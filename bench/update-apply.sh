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

# Slot b: a loop device (direct I/O) on a file on the same filesystem as the bundle, not tmpfs.
work=$(mktemp -d /var/tmp/mm-bench-update.XXXXXX)
loop=""
cleanup() { [ -n "$loop" ] && losetup -d "$loop" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
truncate -s 2G "$work/slot-b.img"
loop=$(losetup --find --show --direct-io=on "$work/slot-b.img")
slot="$loop"

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

apply() {  # prints "seconds max-rss-KiB" of one apply
  rm -rf "$work/esp/loader/entries"/* "$work/esp/micromirror" "$work/data/state"
  echo "title flashed" > "$work/esp/loader/entries/micromirror-a.conf"
  /usr/bin/time -f "%e %M" -o "$work/time" "$bin/mm-node" update apply --bundle "$bundle" --esp "$work/esp" --data "$work/data" \
    --keyring "$work/keys" --identity "$work/identity.json" --cmdline "$work/cmdline" --machine-id /dev/null --slot-device "b=$slot" \
    >/dev/null 2>"$work/apply.err" || { cat "$work/apply.err" >&2; exit 1; }
  cat "$work/time"
}
dd_write() {  # prints "seconds max-rss-KiB" of one dd
  /usr/bin/time -f "%e %M" -o "$work/time" dd if="$payload" of="$slot" bs=4M oflag=direct conv=fsync status=none
  cat "$work/time"
}

# Warm the page cache with the bundle and the payload once (both tools then read from memory,
# and both write to the same partition with O_DIRECT: the comparison is the write path).
cat "$bundle" "$payload" > /dev/null
apply >/dev/null; dd_write >/dev/null
ours=(); theirs=(); rss=()
for _ in $(seq 1 "$runs"); do
  read -r s m < <(apply); ours+=("$s"); rss+=("$m")
  read -r s _ < <(dd_write); theirs+=("$s")
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
  echo "Bundle \`$(basename "$bundle")\`: $(mib "$bundle_bytes") MiB; root payload $(mib "$root_size") MiB. Slot: a loop device (direct I/O) on a file in /var/tmp. $runs runs each, medians."
  echo
  echo "| run | seconds | ratio |"
  echo "|---|---|---|"
  echo "| dd bs=4M oflag=direct conv=fsync (payload only, no checks) | $mt | 1.00 |"
  echo "| mm-node update apply --bundle (signature, every hash, write, fsync, O_DIRECT read-back, ESP files, entry) | $mo | **$ratio** (goal ≤ 1.2) |"
  echo
  echo "mm-node peak RSS: $(python3 -c "print(f'{$mr/1024:.1f}')") MiB. All runs: ours ${ours[*]}; dd ${theirs[*]}."
} > "$out"
cat "$out"
