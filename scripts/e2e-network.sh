#!/usr/bin/env bash
# End to end: boots IMAGE (flashed with a node file for 192.0.2.10/24 and 2001:db8:10::10/64, gateways
# .1 and ::1, MAC 52:54:00:12:34:56, like nodes/example.yaml) on a tap device bridged inside a network
# namespace of its own that holds the gateway addresses. From that namespace it pings the guest over
# IPv4 and IPv6 and captures the guest's replies with tcpdump, checking their DSCP; then lists the
# node's rsync modules over both families, capturing the rsync daemon's packets the same way.
# With --upstream DIR it also runs an rsync daemon on the gateway (192.0.2.1:873) serving DIR as the
# module almalinux (flash the image with a node file whose upstream is rsync://192.0.2.1/): the
# booted node syncs it at once, serves it over HTTP, and its rsync packets must carry the marking too.
#
# With --watchtower CA (a fleet CA from mm-image fleet ca for the broker name 192.0.2.1; the node
# file's telemetry target mqtts://192.0.2.1:8883, its certificate on the image's mm-config) it also
# runs the watchtower there: mosquitto with the CA's configuration and the NOC's renewal service
# (mm-image fleet renewals, --mm-image PATH); the node must report online over TLS with its
# certificate and, when its certificate is due for renewal, renew it and log in with the new one.
#
# With --origin DIR it also serves DIR over HTTP on the gateway (192.0.2.1:80), the origin of the
# node's projects in cache mode (their recipes name no origin: the upstream's host): a file of
# debian-cd fetched twice from the node must come through its cache (MISS, then HIT), reach the
# origin once, and the node's packets to the origin must carry the marking too.
#
# --writable lets the guest's writes reach IMAGE (by default QEMU boots a snapshot of it).
#
#   scripts/e2e-network.sh IMAGE [--expect-dscp cs1|none] [--upstream DIR] [--origin DIR] [--watchtower CA --mm-image PATH] [--writable]
# Prints the tcpdump lines and exits 0 only if both families answer with the expected marking.
set -euo pipefail
image="$1"; shift
expect=cs1
upstream=""
origin=""
watchtower=""
mmimage=mm-image
writable=()
while [ $# -gt 0 ]; do
  case "$1" in
    --expect-dscp) expect="$2"; shift 2 ;;
    --upstream) upstream="$(cd "$2" && pwd)"; shift 2 ;;
    --origin) origin="$(cd "$2" && pwd)"; shift 2 ;;
    --watchtower) watchtower="$(cd "$2" && pwd)"; shift 2 ;;
    --mm-image) mmimage="$2"; shift 2 ;;
    --writable) writable=(--writable); shift ;;
    *) echo "e2e-network: unknown option $1" >&2; exit 2 ;;
  esac
done
here="$(cd "$(dirname "$0")" && pwd)"
ns="mmt-q-$$"
work=$(mktemp -d /tmp/mm-e2e.XXXXXX)
cleanup() {
  # SIGKILL: started under a test runner they may not get SIGTERM (and hold its descriptors).
  pkill -KILL -f "config=$work/rsyncd.conf" 2>/dev/null || true
  pkill -KILL -f "$work/mosquitto.conf" 2>/dev/null || true
  [ -f "$work/renewals.pid" ] && kill -KILL "$(cat "$work/renewals.pid")" 2>/dev/null || true
  [ -f "$work/tcpdump.pid" ] && kill -KILL "$(cat "$work/tcpdump.pid")" 2>/dev/null || true
  [ -f "$work/origin.pid" ] && kill -KILL "$(cat "$work/origin.pid")" 2>/dev/null || true
  [ -f "$work/origin-tcpdump.pid" ] && kill -KILL "$(cat "$work/origin-tcpdump.pid")" 2>/dev/null || true
  ip netns del "$ns" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
. "$here/test-bridge.sh"
make_test_bridge "$ns"
if [ -n "$upstream" ]; then
  printf 'use chroot = no\npid file = %s/rsyncd.pid\n[almalinux]\n  path = %s\n  read only = yes\n  uid = root\n  gid = root\n' "$work" "$upstream" > "$work/rsyncd.conf"
  ip netns exec "$ns" rsync --daemon --config="$work/rsyncd.conf" --address=192.0.2.1 --port=873
  # The node syncs right after it boots: capture its rsync traffic from before QEMU starts.
  ip netns exec "$ns" tcpdump -n -v -l -U -i br0 'tcp dst port 873 and src 192.0.2.10' > "$work/sync.cap" 2>/dev/null &
  echo $! > "$work/tcpdump.pid"
fi
if [ -n "$origin" ]; then
  ip netns exec "$ns" python3 -m http.server 80 --bind 192.0.2.1 --directory "$origin" > "$work/origin.log" 2>&1 &
  echo $! > "$work/origin.pid"
  ip netns exec "$ns" tcpdump -n -v -l -U -i br0 'tcp dst port 80 and dst host 192.0.2.1 and src 192.0.2.10' > "$work/origin.cap" 2>/dev/null &
  echo $! > "$work/origin-tcpdump.pid"
fi
if [ -n "$watchtower" ]; then
  # As root in the namespace: the CA's files are root's.
  { echo "user root"; cat "$watchtower/mosquitto.conf"; } > "$work/mosquitto.conf"
  ip netns exec "$ns" mosquitto -c "$work/mosquitto.conf" > "$work/broker.log" 2>&1 &
  for i in $(seq 1 50); do ip netns exec "$ns" bash -c 'exec 3<>/dev/tcp/127.0.0.1/1883' 2>/dev/null && break; sleep 0.1; done
  ip netns exec "$ns" "$mmimage" fleet renewals --broker mqtt://127.0.0.1:1883 --ca "$watchtower" > "$work/renewals.log" 2>&1 &
  echo $! > "$work/renewals.pid"
fi

check=$(mktemp /tmp/mm-e2e-check.XXXXXX)
cat > "$check" <<CHECK
set -u
cap=\$(mktemp)
timeout -s KILL 30 tcpdump -n -v -l -c 4 -i br0 '(icmp and src 192.0.2.10) or (icmp6 and src 2001:db8:10::10 and ip6[40] == 129)' > "\$cap" 2>/dev/null &
tpid=\$!
sleep 1
ok=0
for i in \$(seq 1 30); do ping -c1 -W1 192.0.2.10 >/dev/null 2>&1 && ok=1 && break; sleep 1; done
[ \$ok = 1 ] || { echo "e2e: no IPv4 answer from 192.0.2.10"; exit 1; }
for i in \$(seq 1 30); do ping -6 -c1 -W1 2001:db8:10::10 >/dev/null 2>&1 && ok=2 && break; sleep 1; done
[ \$ok = 2 ] || { echo "e2e: no IPv6 answer from 2001:db8:10::10"; exit 1; }
ping -c2 -i 0.3 192.0.2.10 >/dev/null; ping -6 -c2 -i 0.3 2001:db8:10::10 >/dev/null
wait \$tpid || true
# The node serves its projects over HTTP on both families.
for url in http://192.0.2.10/ 'http://[2001:db8:10::10]/'; do
  for i in \$(seq 1 20); do curl -sf -g --max-time 3 "\$url" > /tmp/mm-e2e-page.\$\$ && break; sleep 1; done
  grep -q 'Index of /' /tmp/mm-e2e-page.\$\$ || { echo "e2e: no directory listing from \$url"; exit 1; }
  echo "e2e: \$url serves: \$(grep -o 'ubuntu-releases/' /tmp/mm-e2e-page.\$\$ | head -1)"
done
cat "\$cap"
v4=\$(grep -c 'tos 0x20' "\$cap" || true); v6=\$(grep -c 'class 0x20' "\$cap" || true)
echo "e2e: replies with CS1: IPv4 \$v4, IPv6 \$v6"
if [ "$expect" = cs1 ]; then [ "\$v4" -ge 1 ] && [ "\$v6" -ge 1 ]; else [ "\$v4" = 0 ] && [ "\$v6" = 0 ] && grep -q 'tos 0x0' "\$cap"; fi
# The rsync daemon for downstream mirrors answers on both families, its packets marked the same way.
rcap=\$(mktemp)
# SIGKILL to stop it: under a test runner SIGTERM may be blocked (and SIGINT is ignored in the background).
tcpdump -n -v -l -i br0 'tcp src port 873 and (src 192.0.2.10 or src 2001:db8:10::10)' > "\$rcap" 2>/dev/null &
rpid=\$!
sleep 1
for url in rsync://192.0.2.10/ 'rsync://[2001:db8:10::10]/'; do
  for i in \$(seq 1 20); do rsync --contimeout=3 --timeout=10 "\$url" > /tmp/mm-e2e-rsync.\$\$ 2>&1 && break; sleep 1; done
  grep -q '^ubuntu-releases' /tmp/mm-e2e-rsync.\$\$ || { echo "e2e: no rsync module list from \$url:"; cat /tmp/mm-e2e-rsync.\$\$; exit 1; }
  echo "e2e: \$url lists: \$(awk '{print \$1}' /tmp/mm-e2e-rsync.\$\$ | tr '\n' ' ')"
done
sleep 1; kill -KILL \$rpid 2>/dev/null; wait \$rpid 2>/dev/null || true
r4=\$(grep -c 'tos 0x20' "\$rcap" || true); r6=\$(grep -c 'class 0x20' "\$rcap" || true)
o4=\$(grep -c 'tos 0x0,' "\$rcap" || true); o6=\$(grep -c 'IP6 (flowlabel' "\$rcap" || true)
echo "e2e: rsync packets with CS1: IPv4 \$r4, IPv6 \$r6; unmarked: IPv4 \$o4, IPv6 \$o6"
if [ "$expect" = cs1 ]; then [ "\$r4" -ge 1 ] && [ "\$r6" -ge 1 ] && [ "\$o4" = 0 ] && [ "\$o6" = 0 ]; else [ "\$r4" = 0 ] && [ "\$r6" = 0 ]; fi
if [ -n "$upstream" ]; then
  # The node synced almalinux from the gateway's daemon and serves it, indexes and all.
  want=\$(cat "$upstream/9/BaseOS/x86_64/os/repodata/repomd.xml")
  got=""
  for i in \$(seq 1 180); do
    got=\$(curl -sf --max-time 3 http://192.0.2.10/almalinux/9/BaseOS/x86_64/os/repodata/repomd.xml || true)
    [ "\$got" = "\$want" ] && break
    sleep 1
  done
  [ "\$got" = "\$want" ] || { echo "e2e: the node did not sync almalinux from rsync://192.0.2.1/ (got: \$got)"; curl -s http://192.0.2.10/status; exit 1; }
  curl -sf --max-time 3 http://192.0.2.10/almalinux/9/BaseOS/x86_64/os/Packages/mmtest-1.0-1.noarch.rpm | cmp - "$upstream/9/BaseOS/x86_64/os/Packages/mmtest-1.0-1.noarch.rpm" || { echo "e2e: the synced package differs"; exit 1; }
  echo "e2e: the node synced almalinux from rsync://192.0.2.1/ and serves it"
  # The index arrives in the last stage; the run is recorded a moment after it (trace, history), so wait for that.
  for i in \$(seq 1 60); do
    curl -sf --max-time 3 'http://192.0.2.10/status?format=json' | grep -A12 '"name" : "almalinux"' > /tmp/mm-e2e-status.\$\$ || true
    grep -q '"state" : "success"' /tmp/mm-e2e-status.\$\$ && break
    sleep 1
  done
  grep -E '"state"|"size"|"log"' /tmp/mm-e2e-status.\$\$ | sed 's/^ */e2e: status: /'
  sleep 1; kill -KILL \$(cat "$work/tcpdump.pid") 2>/dev/null || true
  s4=\$(grep -c 'tos 0x20' "$work/sync.cap" || true); u4=\$(grep -c 'tos 0x0,' "$work/sync.cap" || true)
  echo "e2e: the node's rsync packets to its upstream: with CS1 \$s4, unmarked \$u4"
  if [ "$expect" = cs1 ]; then [ "\$s4" -ge 1 ] && [ "\$u4" = 0 ]; else [ "\$s4" = 0 ]; fi
fi
if [ -n "$origin" ]; then
  # A project in cache mode: the first request comes from the origin, the second from the cache.
  f=debian-cd/current/mm-test.iso
  for n in 1 2; do
    code=\$(curl -s --max-time 120 -D /tmp/mm-e2e-h\$n.\$\$ -o /tmp/mm-e2e-o\$n.\$\$ -w '%{http_code}' "http://192.0.2.10/\$f" || true)
    cmp -s /tmp/mm-e2e-o\$n.\$\$ "$origin/\$f" || { echo "e2e: cache: request \$n for \$f got \$code and other bytes"; head -c 600 /tmp/mm-e2e-o\$n.\$\$; curl -s http://192.0.2.10/status.json; exit 1; }
    echo "e2e: cache: request \$n: \$code \$(grep -i '^x-cache:' /tmp/mm-e2e-h\$n.\$\$ | tr -d '\r')"
  done
  echo "e2e: cache: origin requests for the file: \$(grep -c "GET /\$f " "$work/origin.log" || true)"
  curl -sf --max-time 3 http://192.0.2.10/status.json | python3 -c 'import json, sys; p = [x for x in json.load(sys.stdin)["projects"] if x["name"] == "debian-cd"][0]; c = p["cache"]; print("e2e: cache status:", p["state"], "files", c["files"], "hits", c["counts"]["hits"], "misses", c["counts"]["misses"], "origin", c["origin"])'
  sleep 1; kill -KILL \$(cat "$work/origin-tcpdump.pid") 2>/dev/null || true
  c4=\$(grep -c 'tos 0x20' "$work/origin.cap" || true); d4=\$(grep -c 'tos 0x0,' "$work/origin.cap" || true)
  echo "e2e: the node's HTTP packets to its origin: with CS1 \$c4, unmarked \$d4"
  if [ "$expect" = cs1 ]; then [ "\$c4" -ge 1 ] && [ "\$d4" = 0 ]; else [ "\$c4" = 0 ]; fi
fi
if [ -n "$watchtower" ]; then
  # The node reports over TLS with its certificate: online, and its state.
  st=""
  for i in \$(seq 1 120); do
    st=\$(timeout -s KILL 4 mosquitto_sub -h 127.0.0.1 -p 1883 -t 'micromirror/nodes/+/status' -v -C 1 -W 2 2>/dev/null || true)
    echo "\$st" | grep -q ' online\$' && break
    sleep 1
  done
  echo "e2e: watchtower status: \$st"
  echo "\$st" | grep -q ' online\$' || { echo "e2e: the node did not report to the watchtower"; cat "$work/broker.log"; exit 1; }
  state=\$(timeout -s KILL 5 mosquitto_sub -h 127.0.0.1 -p 1883 -t 'micromirror/nodes/+/state' -C 1 -W 3 || true)
  echo "\$state" | grep -o '"sponsor" *: *"[^"]*"' | sed 's/^/e2e: watchtower state: /'
  echo "e2e: watchtower sent bytes: \$(echo "\$state" | grep -o '"sentBytes" *: *[0-9]*' | grep -o '[0-9]*\$')"
  # Its certificate was due: the NOC's service renewed it, and the node logged in again with the new one.
  for i in \$(seq 1 120); do grep -q ' renewed: ' "$work/renewals.log" && break; sleep 1; done
  echo "e2e: watchtower renewal: \$(grep -E ' (renewed|refused): ' "$work/renewals.log" | head -1)"
  for i in \$(seq 1 60); do [ "\$(grep -c "New client connected.* u'" "$work/broker.log")" -ge 2 ] && break; sleep 1; done
  echo "e2e: watchtower logins: \$(grep -c "New client connected.* u'" "$work/broker.log")"
  # Give the node a moment to have written it through (the test reads mm-config afterwards).
  sleep 2
fi
CHECK
ip netns exec "$ns" "$here/qemu-boot.sh" "$image" --tap tap0 --nic-mac 52:54:00:12:34:56 --timeout 600 ${writable[@]+"${writable[@]}"} --then "bash $check"
