#!/usr/bin/env bash
# End to end: boots IMAGE (flashed with a node file for 192.0.2.10/24 and 2001:db8:10::10/64, gateways
# .1 and ::1, MAC 52:54:00:12:34:56, like nodes/example.yaml) on a tap device bridged inside a network
# namespace of its own that holds the gateway addresses. From that namespace it pings the guest over
# IPv4 and IPv6 and captures the guest's replies with tcpdump, checking their DSCP; then lists the
# node's rsync modules over both families, capturing the rsync daemon's packets the same way.
#
#   scripts/e2e-network.sh IMAGE [--expect-dscp cs1|none]
# Prints the tcpdump lines and exits 0 only if both families answer with the expected marking.
set -euo pipefail
image="$1"; shift
expect=cs1
[ "${1:-}" = "--expect-dscp" ] && expect="$2"
here="$(cd "$(dirname "$0")" && pwd)"
ns="mmt-q-$$"
cleanup() { ip netns del "$ns" 2>/dev/null || true; }
trap cleanup EXIT
. "$here/test-bridge.sh"
make_test_bridge "$ns"

check=$(mktemp /tmp/mm-e2e-check.XXXXXX)
cat > "$check" <<CHECK
set -u
cap=\$(mktemp)
timeout 30 tcpdump -n -v -l -c 4 -i br0 '(icmp and src 192.0.2.10) or (icmp6 and src 2001:db8:10::10 and ip6[40] == 129)' > "\$cap" 2>/dev/null &
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
timeout 60 tcpdump -n -v -l -i br0 'tcp src port 873 and (src 192.0.2.10 or src 2001:db8:10::10)' > "\$rcap" 2>/dev/null &
rpid=\$!
sleep 1
for url in rsync://192.0.2.10/ 'rsync://[2001:db8:10::10]/'; do
  for i in \$(seq 1 20); do rsync --contimeout=3 --timeout=10 "\$url" > /tmp/mm-e2e-rsync.\$\$ 2>&1 && break; sleep 1; done
  grep -q '^ubuntu-releases' /tmp/mm-e2e-rsync.\$\$ || { echo "e2e: no rsync module list from \$url:"; cat /tmp/mm-e2e-rsync.\$\$; exit 1; }
  echo "e2e: \$url lists: \$(awk '{print \$1}' /tmp/mm-e2e-rsync.\$\$ | tr '\n' ' ')"
done
sleep 1; kill \$rpid 2>/dev/null; wait \$rpid 2>/dev/null || true
r4=\$(grep -c 'tos 0x20' "\$rcap" || true); r6=\$(grep -c 'class 0x20' "\$rcap" || true)
o4=\$(grep -c 'tos 0x0,' "\$rcap" || true); o6=\$(grep -c 'IP6 (flowlabel' "\$rcap" || true)
echo "e2e: rsync packets with CS1: IPv4 \$r4, IPv6 \$r6; unmarked: IPv4 \$o4, IPv6 \$o6"
if [ "$expect" = cs1 ]; then [ "\$r4" -ge 1 ] && [ "\$r6" -ge 1 ] && [ "\$o4" = 0 ] && [ "\$o6" = 0 ]; else [ "\$r4" = 0 ] && [ "\$r6" = 0 ]; fi
CHECK
ip netns exec "$ns" "$here/qemu-boot.sh" "$image" --tap tap0 --nic-mac 52:54:00:12:34:56 --timeout 600 --then "bash $check"
