#!/usr/bin/env bash
# End to end over the air: boots IMAGE (flashed with a node file whose update channel is
# http://192.0.2.1:8080/stable.json, like the one Tests/ImageBuilderCoreTests/UpdateBootTests writes)
# on a tap bridged in a private network namespace that holds 192.0.2.1 and serves CHANNEL-DIR there
# with `mm-node serve`, with a mosquitto broker on 192.0.2.1:1883 for release announcements
# (`mosquitto_pub -h 192.0.2.1 -t micromirror/update/stable -m new` from an --at action). The guest
# polls the channel, installs the release into slot B, reboots into it, passes its health gate and
# blesses it; QEMU is then stopped.
#
#   scripts/e2e-update.sh IMAGE CHANNEL-DIR --until REGEX [--timeout S] [--log FILE] [--then CMD] [--at REGEX ACTION]...
# Exit 0 once a console line matches REGEX (e.g. 'micromirror-boot: slot=b .*build=N\b'); the disk
# file keeps every write of the guest (boot counting, the new slot).
set -euo pipefail
image="$1"; channel="$2"; shift 2
until_re=""; timeout=1500; log=""; then_cmd=""; at=()
while [ $# -gt 0 ]; do
  case "$1" in
    --until) until_re="$2"; shift 2 ;;
    --timeout) timeout="$2"; shift 2 ;;
    --log) log="$2"; shift 2 ;;
    --then) then_cmd="$2"; shift 2 ;;
    --at) at+=(--at "$2" "$3"); shift 3 ;;  # power cuts, ssh, publishing: see qemu-boot.sh
    *) echo "e2e-update: unknown option $1" >&2; exit 2 ;;
  esac
done
[ -n "$until_re" ] || { echo "e2e-update: --until REGEX is required" >&2; exit 2; }
here="$(cd "$(dirname "$0")" && pwd)"
bin="${MM_BINARIES:-$(cd "$here/.." && swift build -c release --show-bin-path)}"
ns="mmt-u-$$"
work="$(mktemp -d)"
cleanup() {
  [ -n "${spid:-}" ] && kill "$spid" 2>/dev/null || true
  # SIGKILL: started under a test runner, mosquitto inherits a blocked SIGTERM and would outlive us
  # (holding the runner's descriptors, so the test never saw this script end).
  [ -n "${bpid:-}" ] && kill -KILL "$bpid" 2>/dev/null || true
  ip netns del "$ns" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
. "$here/test-bridge.sh"
make_test_bridge "$ns"
# The channel, served by our own server in the namespace (as a mirror node would serve it).
ip netns exec "$ns" "$bin/mm-node" serve --root "$channel" --listen 192.0.2.1:8080 --access-log "$channel.access.log" >/dev/null 2>&1 &
spid=$!
# The broker the node file names (mqtt://192.0.2.1:1883): the NOC's release announcements.
printf 'listener 1883 192.0.2.1\nallow_anonymous true\npersistence false\n' > "$work/mosquitto.conf"
ip netns exec "$ns" mosquitto -c "$work/mosquitto.conf" >"$work/mosquitto.log" 2>&1 &
bpid=$!
for _ in $(seq 50); do ip netns exec "$ns" ss -Hltn | grep -q '192.0.2.1:1883' && break; sleep 0.1; done
ip netns exec "$ns" ss -Hltn | grep -q '192.0.2.1:1883' || { echo "e2e-update: mosquitto did not start:" >&2; cat "$work/mosquitto.log" >&2; exit 1; }
args=("$image" --tap tap0 --nic-mac 52:54:00:12:34:56 --writable --reboots --until "$until_re" --timeout "$timeout")
[ -n "$log" ] && args+=(--log "$log")
[ -n "$then_cmd" ] && args+=(--then "$then_cmd")
args+=("${at[@]}")
ip netns exec "$ns" "$here/qemu-boot.sh" "${args[@]}"
