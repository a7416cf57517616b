#!/usr/bin/env bash
# Boots a micromirror disk image under QEMU (TCG) + OVMF and waits for the guest to report, on
# its serial console, that it reached multi-user and which slot it booted.
#
#   scripts/qemu-boot.sh IMAGE [--expect-slot a] [--expect-failed none] [--nic-mac MAC] [--timeout 300]
#                        [--tap IFNAME] [--ssh KEY] [--then COMMAND] [--poweroff] [--log FILE] [--writable]
#                        [--reboots --until REGEX] [--at REGEX ACTION]... [-- extra qemu args]
#
# Exit 0 when the line `micromirror-boot: slot=<expected> ... failed=<expected>` appears; 1 on timeout
# or anything else. --nic-mac adds a virtio NIC on QEMU's user network with restrict=on: the guest
# cannot reach the host or anything beyond it. --tap IFNAME attaches that NIC to an existing tap
# device instead (e.g. one on a bridge inside a test network namespace). --then COMMAND runs once the
# guest has reported, while it is still running; its exit status becomes this script's.
# --ssh KEY (with --nic-mac, for a node file with 192.0.2.10/24 that trusts KEY.pub): QEMU's user
# network takes the node's addresses (192.0.2.0/24, gateway .1) and forwards a free port on
# 127.0.0.1 to the guest's sshd; once sshd answers, COMMAND runs with MM_GUEST_SSH set to an ssh
# command line for root@guest (e.g. `$MM_GUEST_SSH journalctl --list-boots`).
# --poweroff (with --ssh): after COMMAND, `systemctl poweroff` in the guest and wait for QEMU to
# exit, so the guest's journal and filesystems are closed cleanly (use with --writable).
# --reboots lets the guest reboot (an update, a fallback) instead of ending QEMU, and --until REGEX
# waits for a console line matching REGEX (e.g. the boot line of slot b) instead of the first boot line.
# --at REGEX ACTION (repeatable, in order, before --until): once a console line matches REGEX (each
# searched after the previous one's match), ACTION runs: `cut` or `cut:SECONDS` pulls the power
# (SIGKILL QEMU, after SECONDS) and turns the machine on again with the same disk and firmware
# variables; `sh:COMMAND` runs COMMAND and goes on (e.g. ssh into the guest, publish a release).
# The image is not modified unless --writable is given (then the guest's writes, e.g. systemd-boot's
# boot counting on the ESP, land in the file).
set -euo pipefail
export LC_ALL=C

image=""
expect_slot="a"
expect_failed="none"
nic=(-nic none)
tap=""
mac=""
then_cmd=""
ssh_key=""
poweroff=0
timeout=300
log=""
snapshot="on"
reboot_flag=(-no-reboot)
until_re=""
events=()
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --expect-slot) expect_slot="$2"; shift 2 ;;
    --expect-failed) expect_failed="$2"; shift 2 ;;
    --nic-mac) mac="$2"; shift 2 ;;
    --tap) tap="$2"; shift 2 ;;
    --then) then_cmd="$2"; shift 2 ;;
    --ssh) ssh_key="$2"; shift 2 ;;
    --poweroff) poweroff=1; shift ;;
    --timeout) timeout="$2"; shift 2 ;;
    --log) log="$2"; shift 2 ;;
    --writable) snapshot="off"; shift ;;
    --reboots) reboot_flag=(); shift ;;
    --until) until_re="$2"; shift 2 ;;
    --at) events+=("$2" "$3"); shift 3 ;;
    --) shift; extra=("$@"); break ;;
    -*) echo "qemu-boot: unknown option $1" >&2; exit 2 ;;
    *) image="$1"; shift ;;
  esac
done
[ -n "$image" ] || { echo "usage: qemu-boot.sh IMAGE [--expect-slot a] [--timeout S] [--ssh KEY] [--then CMD] [--poweroff] [--log FILE] [--writable]" >&2; exit 2; }
[ "$poweroff" = 0 ] || [ -n "$ssh_key" ] || { echo "qemu-boot: --poweroff needs --ssh" >&2; exit 2; }
[ -f "$image" ] || { echo "qemu-boot: no such image: $image" >&2; exit 2; }

code=/usr/share/OVMF/OVMF_CODE_4M.fd
vars_template=/usr/share/OVMF/OVMF_VARS_4M.fd
for f in "$code" "$vars_template"; do
  [ -f "$f" ] || { echo "qemu-boot: $f missing: apt-get install ovmf" >&2; exit 2; }
done
command -v qemu-system-x86_64 >/dev/null || { echo "qemu-boot: qemu-system-x86_64 missing: apt-get install qemu-system-x86" >&2; exit 2; }

if [ -n "$tap" ]; then
  nic=(-netdev "tap,id=n0,ifname=$tap,script=no,downscript=no" -device "virtio-net-pci,netdev=n0,mac=${mac:-52:54:00:12:34:56}")
elif [ -n "$ssh_key" ]; then
  [ -f "$ssh_key" ] || { echo "qemu-boot: no such ssh key: $ssh_key" >&2; exit 2; }
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  nic=(-netdev "user,id=n0,restrict=on,net=192.0.2.0/24,host=192.0.2.1,hostfwd=tcp:127.0.0.1:$port-192.0.2.10:22"
       -device "virtio-net-pci,netdev=n0,mac=${mac:-52:54:00:12:34:56}")
  export MM_GUEST_SSH="ssh -i $ssh_key -p $port -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o IdentitiesOnly=yes -o ConnectTimeout=20 -o LogLevel=ERROR root@127.0.0.1"
elif [ -n "$mac" ]; then
  nic=(-netdev user,id=n0,restrict=on -device "virtio-net-pci,netdev=n0,mac=$mac")
fi

work=$(mktemp -d /tmp/mm-qemu.XXXXXX)
[ -n "$log" ] || log="$work/serial.log"
: > "$log"
cp "$vars_template" "$work/vars.fd"
cleanup() {
  # SIGKILL: a parent may have left SIGTERM blocked for us, and the disk is a snapshot anyway
  # (with --writable the guest's writes are already in the file).
  if [ -n "${qpid:-}" ]; then kill -KILL "$qpid" 2>/dev/null || true; wait "$qpid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# KVM does not work on the build machines: TCG, 2 vCPUs, 1 GiB. The chipset's watchdog (ICH9 TCO,
# iTCO_wdt, like the T620's sp5100_tco) resets the machine: QEMU 7.2 straps it to no-reboot unless told.
start_qemu() {
  qemu-system-x86_64 \
    -machine q35,accel=tcg -cpu max -smp 2 -m 1024 -global ICH9-LPC.noreboot=false \
    -drive if=pflash,format=raw,unit=0,readonly=on,file="$code" \
    -drive if=pflash,format=raw,unit=1,file="$work/vars.fd" \
    -drive file="$image",format=raw,if=virtio,snapshot="$snapshot" \
    "${nic[@]}" -display none "${reboot_flag[@]}" \
    -chardev file,id=console,path="$log",append=on -serial chardev:console \
    "${extra[@]}" &
  qpid=$!
}
start_qemu

# The console after byte $seen: each --at and --until looks only at what came after the last match.
seen=0
matched=""
match_after() {  # REGEX -> sets $matched to the matching line and advances $seen past it
  local found offset text
  found=$(tail -c +"$((seen + 1))" "$log" 2>/dev/null | grep -a -b -E -m1 "$1") || return 1
  offset=${found%%:*}; text=${found#*:}
  seen=$((seen + offset + ${#text} + 1))  # bytes: LC_ALL=C
  matched=${text//$'\r'/}
}
start=$(date +%s)
next_event=0
while :; do
  if [ "$next_event" -lt "${#events[@]}" ]; then
    if match_after "${events[$next_event]}"; then
      action=${events[$((next_event + 1))]}
      next_event=$((next_event + 2))
      echo "qemu-boot: after $(( $(date +%s) - start ))s: ${matched}"
      case "$action" in
        cut|cut:*)
          [ "$action" = cut ] || sleep "${action#cut:}"
          kill -KILL "$qpid" 2>/dev/null || true; wait "$qpid" 2>/dev/null || true
          echo "qemu-boot: power cut after $(( $(date +%s) - start ))s; powering on again"
          printf '\n[qemu-boot: power cut]\n' >> "$log"
          start_qemu ;;
        sh:*)
          bash -c "${action#sh:}" || { echo "qemu-boot: the action for /${events[$((next_event - 2))]}/ failed" >&2; exit 1; } ;;
        *) echo "qemu-boot: unknown action $action" >&2; exit 2 ;;
      esac
      continue
    fi
  elif [ -n "$until_re" ]; then
    if match_after "$until_re"; then
      echo "qemu-boot: guest reported after $(( $(date +%s) - start ))s: ${matched}"
      status=0
      [ -z "$then_cmd" ] || bash -c "$then_cmd" || status=$?
      exit "$status"
    fi
  elif line=$(grep -a -m1 'micromirror-boot: slot=' "$log" 2>/dev/null); then
    elapsed=$(( $(date +%s) - start ))
    echo "qemu-boot: guest reported after ${elapsed}s: ${line//$'\r'/}"
    if grep -a -q "micromirror-boot: slot=${expect_slot} .*failed=${expect_failed}\b" "$log"; then
      status=0
      if [ -n "$ssh_key" ]; then
        # sshd may still be starting when the boot line appears.
        for _ in $(seq 1 60); do $MM_GUEST_SSH true 2>/dev/null && break; sleep 2; done
        $MM_GUEST_SSH true || { echo "qemu-boot: the guest's sshd does not let us in" >&2; exit 1; }
      fi
      if [ -n "$then_cmd" ]; then
        bash -c "$then_cmd" || status=$?
      fi
      if [ "$poweroff" = 1 ]; then
        $MM_GUEST_SSH systemctl poweroff >/dev/null 2>&1 || true
        for _ in $(seq 1 "$timeout"); do kill -0 "$qpid" 2>/dev/null || break; sleep 1; done
        if kill -0 "$qpid" 2>/dev/null; then echo "qemu-boot: the guest did not power off within ${timeout}s" >&2; exit 1; fi
        wait "$qpid" 2>/dev/null || true
        qpid=""
        echo "qemu-boot: guest powered off"
      fi
      exit "$status"
    fi
    echo "qemu-boot: expected slot ${expect_slot} with failed=${expect_failed}" >&2
    exit 1
  fi
  if ! kill -0 "$qpid" 2>/dev/null; then
    echo "qemu-boot: QEMU exited before the guest reported; last console lines:" >&2
    tail -n 30 "$log" | tr -d '\r' >&2
    exit 1
  fi
  if [ $(( $(date +%s) - start )) -ge "$timeout" ]; then
    echo "qemu-boot: no report within ${timeout}s; last console lines:" >&2
    tail -n 30 "$log" | tr -d '\r' >&2
    exit 1
  fi
  sleep 1
done
