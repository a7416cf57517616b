#!/usr/bin/env bash
# Serving benchmark: mm-node serve against nginx on the same machine, same files, same wrk commands.
#   bench/serve.sh      (as root, ~5 minutes; installs nginx and wrk from Debian)
# Writes bench/results/serve-DATE.md and prints it.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
command -v nginx >/dev/null && command -v wrk >/dev/null || { apt-get update -qq; apt-get install -y -qq nginx-light wrk >/dev/null; }
scripts/build-programs.sh >/dev/null
bin=$(swift build -c release --show-bin-path)
work=$(mktemp -d /var/tmp/mm-bench-serve.XXXXXX)
chmod 755 "$work"   # nginx workers run as www-data and must read the files
root="$work/root"
mkdir -p "$root/small" "$work/tmp"
head -c 1073741824 /dev/zero | tr '\0' 'x' > "$root/big.iso"
for i in $(seq 0 999); do head -c 4096 /dev/urandom > "$root/small/$i.bin"; done
ulimit -n "$(ulimit -Hn)"   # the hard limit here is 20000: enough for 10,000 connections per process
duration=${DURATION:-10}
ours=18180
theirs=18181
uncached=18182   # mm-node with its small-file cache off: the open/stat/read/close path every time
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

start_servers() {  # keepalive seconds
  local keepalive=$1
  sed -e "s|@WORK@|$work|g; s|@ROOT@|$root|g; s|@PORT@|$theirs|g; s|@KEEPALIVE@|${keepalive}s|g" bench/nginx.conf.in > "$work/nginx.conf"
  nginx -c "$work/nginx.conf"
  "$bin/mm-node" serve --root "$root" --listen "127.0.0.1:$ours" --keepalive "$keepalive" --max-per-address 100000 \
    --max-connections 100000 --access-log "$work/mm-access.log" >/dev/null 2>&1 &
  pids+=($!)
  "$bin/mm-node" serve --root "$root" --listen "127.0.0.1:$uncached" --keepalive "$keepalive" --max-per-address 100000 \
    --max-connections 100000 --access-log "$work/mm-access-uncached.log" --small-file-cache 0 >/dev/null 2>&1 &
  pids+=($!)
  sleep 1
}
stop_servers() {
  kill "$(cat "$work/nginx.pid")"; for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; pids=(); sleep 1
}
wrk_run() {  # connections url -> "requests_per_sec transfer_per_sec_bytes p99_ms"
  wrk -t2 -c"$1" -d"${duration}s" --latency "$2" 2>/dev/null | python3 -c '
import re,sys
t=sys.stdin.read()
rps=float(re.search(r"Requests/sec:\s+([\d.]+)",t).group(1))
m=re.search(r"Transfer/sec:\s+([\d.]+)(\w+)",t); mult={"B":1,"KB":1024,"MB":1024**2,"GB":1024**3}[m.group(2)]
p=re.search(r"99%\s+([\d.]+)(\w+)",t); pm={"us":0.001,"ms":1,"s":1000}[p.group(2)]
print(rps, float(m.group(1))*mult, float(p.group(1))*pm)'
}

start_servers 2
read big_ours_rps big_ours_bps _ < <(wrk_run 8 "http://127.0.0.1:$ours/big.iso")
read big_nginx_rps big_nginx_bps _ < <(wrk_run 8 "http://127.0.0.1:$theirs/big.iso")
# Small files are CPU-bound and shared with wrk on the same cores: three alternating rounds, medians.
median() { python3 -c "import statistics,sys; print(statistics.median(float(x) for x in sys.argv[1:]))" "$@"; }
small_ours=(); small_ours_lat=(); small_nginx=(); small_nginx_lat=(); small_unc=(); small_unc_lat=()
for round in 1 2 3; do
  read r _ p < <(wrk_run 64 "http://127.0.0.1:$ours/small/1.bin"); small_ours+=("$r"); small_ours_lat+=("$p")
  read r _ p < <(wrk_run 64 "http://127.0.0.1:$theirs/small/1.bin"); small_nginx+=("$r"); small_nginx_lat+=("$p")
  read r _ p < <(wrk_run 64 "http://127.0.0.1:$uncached/small/1.bin"); small_unc+=("$r"); small_unc_lat+=("$p")
done
small_ours_rps=$(median "${small_ours[@]}"); small_ours_p99=$(median "${small_ours_lat[@]}")
small_nginx_rps=$(median "${small_nginx[@]}"); small_nginx_p99=$(median "${small_nginx_lat[@]}")
small_unc_rps=$(median "${small_unc[@]}"); small_unc_p99=$(median "${small_unc_lat[@]}")
stop_servers

# Idle connections outlive the test only with a long keep-alive; both servers get the same one.
start_servers 120
nginx_pids=$(pgrep -d, -f "nginx: (master|worker)")
read idle_ours_before idle_ours_during idle_ours_alive < <(python3 bench/idle-connections.py $ours 10000 "${pids[0]}")
read idle_nginx_before idle_nginx_during idle_nginx_alive < <(python3 bench/idle-connections.py $theirs 10000 "$nginx_pids")
stop_servers

r() { python3 -c "print(f'{$1/$2:.2f}')"; }
gbit() { python3 -c "print(f'{$1*8/1e9:.2f} Gbit/s')"; }
mib() { python3 -c "print(f'{$1/1024:.1f} MiB')"; }
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')
out="bench/results/serve-$(date +%Y-%m-%d).md"
mkdir -p bench/results
{
  echo "# Serving benchmark, $(date -u +%Y-%m-%d)"
  echo
  echo "Machine: $cpu, $(nproc) cores. Command: \`bench/serve.sh\` (wrk -t2, ${duration}s per run, loopback; small files: median of three alternating rounds). nginx $(nginx -v 2>&1 | cut -d/ -f2) with sendfile, tcp_nopush, keepalive 2 s, 2 workers; mm-node serve on the NIO default group (one thread per core). Both write an access log."
  echo
  echo "| test | mm-node | nginx | ratio (mm-node / nginx) |"
  echo "|---|---|---|---|"
  echo "| 1 GiB file, 8 connections: throughput | $(gbit $big_ours_bps) | $(gbit $big_nginx_bps) | $(r $big_ours_bps $big_nginx_bps) (goal ≥ 1.0) |"
  echo "| 4 KiB files, 64 keep-alive connections: requests/s | ${small_ours_rps} | ${small_nginx_rps} | $(r $small_ours_rps $small_nginx_rps) (goal ≥ 1.0) |"
  echo "| 4 KiB files, 64 connections: p99 latency | ${small_ours_p99} ms | ${small_nginx_p99} ms | $(r $small_ours_p99 $small_nginx_p99) (lower is better) |"
  echo "| 4 KiB files, small-file cache off: requests/s | ${small_unc_rps} | ${small_nginx_rps} | $(r $small_unc_rps $small_nginx_rps) |"
  echo "| 4 KiB files, small-file cache off: p99 latency | ${small_unc_p99} ms | ${small_nginx_p99} ms | $(r $small_unc_p99 $small_nginx_p99) (lower is better) |"
  echo "| 10,000 idle keep-alive connections: resident memory added | $(mib $((idle_ours_during-idle_ours_before))) | $(mib $((idle_nginx_during-idle_nginx_before))) | $(r $((idle_ours_during-idle_ours_before)) $((idle_nginx_during-idle_nginx_before))) (lower is better) |"
  echo "| 10,000 idle connections: resident memory in all | $(mib $idle_ours_during) | $(mib $idle_nginx_during) | $(r $idle_ours_during $idle_nginx_during) |"
  echo "| connections still open after the idle test | $idle_ours_alive | $idle_nginx_alive | |"
  echo
  echo "Small-file rounds (requests/s): mm-node ${small_ours[*]}; nginx ${small_nginx[*]}; mm-node with the cache off ${small_unc[*]}."
} | tee "$out"
