# Sourced by the end-to-end scripts: a private network namespace NS holding the node's gateways
# (192.0.2.1/24, 2001:db8:10::1/64) on a bridge br0, with a tap device tap0 on it for QEMU.
# Traffic stays inside NS; deleting NS removes all of it.
make_test_bridge() {
  local ns="$1"
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  ip -n "$ns" link add br0 type bridge
  ip -n "$ns" addr add 192.0.2.1/24 dev br0
  ip -n "$ns" addr add 2001:db8:10::1/64 dev br0 nodad
  ip -n "$ns" link set br0 up
  ip -n "$ns" tuntap add dev tap0 mode tap
  ip -n "$ns" link set tap0 master br0
  ip -n "$ns" link set tap0 up
}
