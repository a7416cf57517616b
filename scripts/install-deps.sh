#!/usr/bin/env bash
# Installs every Debian package micromirror's build, image and tests need.
# Idempotent: packages already present are skipped by apt.
set -euo pipefail

packages=(
  # C libraries the Swift package links
  libparted-dev libblkid-dev libarchive-dev libssl-dev libmosquitto-dev libsqlite3-dev pkg-config
  # image build
  mmdebstrap debian-archive-keyring erofs-utils dosfstools mtools parted fdisk gdisk
  openssl bmap-tools util-linux mount e2fsprogs xfsprogs zstd git initramfs-tools-core cpio
  # boot tests
  qemu-system-x86 ovmf openssh-client
  # network tests
  iproute2 nftables tcpdump iputils-ping systemd strace
  # serving tests: real clients; nginx as the origin of the pull-through cache tests
  curl wget aria2 apt-utils dpkg-dev python3 nginx-light
  # syncing tests: a real rsync daemon and client, a real MQTT broker and publisher
  rsync mosquitto mosquitto-clients
  # telemetry tests: a real Prometheus (server and promtool) and its Python text parser
  prometheus python3-prometheus-client
  # the status page as a person sees it: headless Chromium takes its screenshot
  chromium
)

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: must run as root (apt-get install)" >&2
  exit 1
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# Daemons (nginx, mosquitto, prometheus) are not started by their packages: the tests start their
# own, and a stock nginx on port 80 would only get in the way (or fail the install where 80 is taken).
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod 755 "$policy"
  trap 'rm -f "$policy"' EXIT
fi
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done"
