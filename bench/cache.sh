#!/usr/bin/env bash
# Pull-through cache benchmark: mm-node serve in cache mode against nginx proxy_cache (+ proxy_cache_lock)
# on the same machine, in front of the same origin (a plain nginx, bench/nginx-upstream.conf.in).
#   bench/cache.sh      (as root, ~3 minutes after the build; installs nginx and wrk from Debian)
# MM_NODE=path/to/mm-node skips the build; DURATION (wrk seconds per run, 10), CLIENTS (cold
# clients, 10), ROUNDS (cold rounds, 3) change the runs.
# Writes bench/results/cache-DATE.md and prints it.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
command -v nginx >/dev/null && command -v wrk >/dev/null || { apt-get update -qq; apt-get install -y -qq nginx-light wrk >/dev/null; }
if [ -z "${MM_NODE:-}" ]; then
  # The same build as bench/serve.sh and the image (static Swift runtime, stripped), mm-node only.
  scripts/build-programs.sh --product mm-node > /tmp/mm-bench-cache-build.log 2>&1 || { tail -40 /tmp/mm-bench-cache-build.log >&2; exit 1; }
  MM_NODE="$(swift build -c release --show-bin-path)/mm-node"
fi
work=$(mktemp -d /var/tmp/mm-bench-cache.XXXXXX)
chmod 755 "$work"   # nginx workers run as www-data and must read the origin's files
origin_root="$work/origin"
mkdir -p "$origin_root/proj/small" "$origin_root/proj/slow" "$work/tmp" "$work/mirror"
chown www-data "$work/tmp"
head -c 1073741824 /dev/zero | tr '\0' 'x' > "$origin_root/proj/big.iso"
for i in $(seq 0 99); do head -c 4096 /dev/urandom > "$origin_root/proj/small/$i.deb"; done
cold_size=67108864
head -c "$cold_size" /dev/urandom > "$origin_root/proj/slow/cold.iso"
ulimit -n "$(ulimit -Hn)"
load=$(cut -d' ' -f1-3 /proc/loadavg)
duration=${DURATION:-10}
clients=${CLIENTS:-10}
rounds=${ROUNDS:-3}
rate_mib=20   # the origin's per-connection rate for /proj/slow/ (MiB/s): 64 MiB take 3.2 s
upstream=18280
ours=18281
theirs=18282
plain=18283   # for reference: mm-node serving the warm cache's directory as a mirror root (no cache mode)

ours_pid=
plain_pid=
cleanup() {
  for p in $ours_pid $plain_pid; do kill "$p" 2>/dev/null || true; done
  for f in nginx-cache.pid upstream.pid; do [ -f "$work/$f" ] && kill "$(cat "$work/$f")" 2>/dev/null || true; done
  sleep 0.5
  rm -rf "$work"
}
trap cleanup EXIT

wait_gone() { for _ in $(seq 100); do [ -e "$1" ] || return 0; sleep 0.1; done; echo "cache.sh: $1 still there" >&2; return 1; }
wait_port() { for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$1/" && return 0; sleep 0.1; done; echo "cache.sh: nothing on port $1" >&2; return 1; }

sed -e "s|@WORK@|$work|g; s|@ROOT@|$origin_root|g; s|@PORT@|$upstream|g; s|@RATE@|${rate_mib}m|g" bench/nginx-upstream.conf.in > "$work/upstream.conf"
nginx -c "$work/upstream.conf"
wait_port $upstream

cat > "$work/proj.yaml" <<EOF
project: proj
mode: cache
origin: http://127.0.0.1:$upstream/proj/
cache:
  budget: 4G
  metadata-ttl: 30s
  origin-timeout: 15s
EOF

start_ours() {  # cache directory (fresh or not)
  mkdir -p "$1"
  "$MM_NODE" serve --root "$work/mirror" --listen "127.0.0.1:$ours" --keepalive 2 --max-per-address 100000 \
    --max-connections 100000 --access-log "$work/mm-access.log" --cache-recipe "$work/proj.yaml" --cache-root "$1" \
    --first-prefetch 86400 > "$work/mm-stdout.log" 2> "$work/mm-stderr.log" &
  ours_pid=$!
  for _ in $(seq 100); do grep -q "listening on" "$work/mm-stdout.log" 2>/dev/null && return 0; sleep 0.1; done
  echo "cache.sh: mm-node did not start:" >&2; cat "$work/mm-stderr.log" >&2; return 1
}
stop_ours() { kill "$ours_pid"; wait "$ours_pid" 2>/dev/null || true; ours_pid=; }
start_nginx() {  # cache directory
  mkdir -p "$1"; chown www-data "$1"
  sed -e "s|@WORK@|$work|g; s|@CACHE@|$1|g; s|@PORT@|$theirs|g; s|@UPSTREAM@|$upstream|g" bench/nginx-cache.conf.in > "$work/nginx-cache.conf"
  nginx -c "$work/nginx-cache.conf"
  wait_port $theirs
}
stop_nginx() { kill "$(cat "$work/nginx-cache.pid")"; wait_gone "$work/nginx-cache.pid"; }

# Fetches URL until the answer says it came from the cache (X-Cache: HIT), 20 tries.
warm() {
  for _ in $(seq 20); do
    [ "$(curl -s -o /dev/null -w '%header{x-cache}' "$1")" = HIT ] && return 0
    sleep 0.2
  done
  echo "cache.sh: $1 never became a hit" >&2; return 1
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
median() { python3 -c "import statistics,sys; print(statistics.median(float(x) for x in sys.argv[1:]))" "$@"; }

# 1. Hits: both caches warm (every measured file cached), the same wrk commands as bench/serve.sh.
start_ours "$work/ours-hit"
start_nginx "$work/nginx-hit"
for port in $ours $theirs; do
  warm "http://127.0.0.1:$port/proj/big.iso"
  for i in 0 1 2 3; do warm "http://127.0.0.1:$port/proj/small/$i.deb"; done
done
# The same files from mm-node as a plain mirror: what a hit costs over serving a mirrored file.
"$MM_NODE" serve --root "$work/ours-hit" --listen "127.0.0.1:$plain" --keepalive 2 --max-per-address 100000 \
  --max-connections 100000 --access-log "$work/mm-plain-access.log" >/dev/null 2>&1 &
plain_pid=$!
wait_port $plain
read big_ours_rps big_ours_bps _ < <(wrk_run 8 "http://127.0.0.1:$ours/proj/big.iso")
read big_nginx_rps big_nginx_bps _ < <(wrk_run 8 "http://127.0.0.1:$theirs/proj/big.iso")
small_ours=(); small_ours_lat=(); small_nginx=(); small_nginx_lat=(); small_plain=(); small_plain_lat=()
for round in 1 2 3; do
  read r _ p < <(wrk_run 64 "http://127.0.0.1:$ours/proj/small/1.deb"); small_ours+=("$r"); small_ours_lat+=("$p")
  read r _ p < <(wrk_run 64 "http://127.0.0.1:$theirs/proj/small/1.deb"); small_nginx+=("$r"); small_nginx_lat+=("$p")
  read r _ p < <(wrk_run 64 "http://127.0.0.1:$plain/proj/small/1.deb"); small_plain+=("$r"); small_plain_lat+=("$p")
done
kill "$plain_pid"; wait "$plain_pid" 2>/dev/null || true; plain_pid=
small_ours_rps=$(median "${small_ours[@]}"); small_ours_p99=$(median "${small_ours_lat[@]}")
small_nginx_rps=$(median "${small_nginx[@]}"); small_nginx_p99=$(median "${small_nginx_lat[@]}")
small_plain_rps=$(median "${small_plain[@]}"); small_plain_p99=$(median "${small_plain_lat[@]}")
ours_hits_status=$(curl -s "http://127.0.0.1:$ours/status.json" | python3 -c '
import json, sys
def find(o):  # the cache summary: the object with "counts" and "origin"
    if isinstance(o, dict):
        if "counts" in o and "origin" in o: return o
        o = list(o.values())
    if isinstance(o, list):
        for v in o:
            r = find(v)
            if r: return r
c = find(json.load(sys.stdin))["counts"]
print(c["hits"], "hits,", c["misses"], "misses,", c["originBytes"], "bytes from the origin")' 2>/dev/null || echo "?")
stop_ours
stop_nginx

# 2 and 3. Cold misses: CLIENTS requests at once for one uncached 64 MiB file the origin sends at
# 20 MiB/s, each cache with a fresh directory; per client the time to the first body byte and the
# whole; the origin's access log says how many bytes it sent for the file.
cold_path=/proj/slow/cold.iso
cold_round() {  # port label round -> appends "label round ttfb total code size x-cache" lines to cold.txt;
               # prints the origin's bytes and requests for the file, and its longest transfer (s)
  local port=$1 label=$2 round=$3 before pids=() i
  before=$(wc -l < "$work/upstream-access.log")
  for i in $(seq "$clients"); do
    curl -s -o /dev/null -w "$label $round %{time_starttransfer} %{time_total} %{http_code} %{size_download} %header{x-cache}\n" \
      "http://127.0.0.1:$port$cold_path" > "$work/cold-$label-$round-$i.txt" &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p"; done
  cat "$work"/cold-"$label"-"$round"-*.txt >> "$work/cold.txt"
  sleep 0.5   # the origin logs a request when it ends
  tail -n +"$((before + 1))" "$work/upstream-access.log" | awk -v p="$cold_path" '$2 == p { n++; s += $(NF-1); if ($NF > t) t = $NF } END { printf "%d %d %.2f\n", s, n, t }'
}
: > "$work/cold.txt"
origin_ours=(); origin_nginx=(); reqs_ours=(); reqs_nginx=(); secs_ours=(); secs_nginx=()
for round in $(seq "$rounds"); do
  start_ours "$work/ours-cold-$round"
  read b n t < <(cold_round $ours ours "$round"); origin_ours+=("$b"); reqs_ours+=("$n"); secs_ours+=("$t")
  stop_ours
  start_nginx "$work/nginx-cold-$round"
  read b n t < <(cold_round $theirs nginx "$round"); origin_nginx+=("$b"); reqs_nginx+=("$n"); secs_nginx+=("$t")
  stop_nginx
done
read cold_summary < <(python3 - "$work/cold.txt" "$cold_size" <<'EOF'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
size = int(sys.argv[2])
out = []
for label in ("ours", "nginx"):
    mine = [r for r in rows if r[0] == label]
    ttfb = [float(r[2]) * 1000 for r in mine]; total = [float(r[3]) * 1000 for r in mine]
    bad = sum(1 for r in mine if r[4] != "200" or int(r[5]) != size)
    out += [f"{statistics.median(ttfb):.1f}", f"{max(ttfb):.1f}", f"{min(ttfb):.1f}", f"{statistics.median(total):.0f}", f"{max(total):.0f}", str(bad)]
print(" ".join(out))
EOF
)
read ttfb_ours_med ttfb_ours_max ttfb_ours_min total_ours_med total_ours_max bad_ours \
     ttfb_nginx_med ttfb_nginx_max ttfb_nginx_min total_nginx_med total_nginx_max bad_nginx <<< "$cold_summary"

r() { python3 -c "print(f'{$1/$2:.2f}')"; }
r3() { python3 -c "print(f'{$1/$2:.3f}')"; }
gbit() { python3 -c "print(f'{$1*8/1e9:.2f} Gbit/s')"; }
mib() { python3 -c "print(f'{$1/1048576:.1f} MiB')"; }
copies() { python3 -c "import sys; print(' '.join(f'{int(x)/$cold_size:.2f}' for x in sys.argv[1:]))" "$@"; }
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')
out="bench/results/cache-$(date +%Y-%m-%d).md"
mkdir -p bench/results
{
  echo "# Pull-through cache benchmark, $(date -u +%Y-%m-%d)"
  echo
  echo "Machine: $cpu, $(nproc) cores, load average before the run: $load. Command: \`bench/cache.sh\` (loopback; origin: nginx $(nginx -v 2>&1 | cut -d/ -f2), its own config and access log). mm-node serve --cache-recipe (small-file cache at its default, 16 MiB per event loop; prefetch pushed out of the run) against nginx proxy_cache + proxy_cache_lock (lock timeout and age 10 min), sendfile, tcp_nopush, keepalive 2 s, 2 workers; both write an access log."
  echo
  echo "Hits (both caches warm; wrk -t2, ${duration}s per run; small file: median of three alternating rounds):"
  echo
  echo "| test | mm-node | nginx proxy_cache | ratio (mm-node / nginx) |"
  echo "|---|---|---|---|"
  echo "| cached 1 GiB file, 8 connections: throughput | $(gbit $big_ours_bps) | $(gbit $big_nginx_bps) | $(r $big_ours_bps $big_nginx_bps) (goal ≥ 1.0) |"
  echo "| cached 4 KiB file, 64 keep-alive connections: requests/s | ${small_ours_rps} | ${small_nginx_rps} | $(r $small_ours_rps $small_nginx_rps) (goal ≥ 1.0) |"
  echo "| cached 4 KiB file, 64 connections: p99 latency | ${small_ours_p99} ms | ${small_nginx_p99} ms | $(r $small_ours_p99 $small_nginx_p99) (lower is better) |"
  echo "| for reference: the same 4 KiB file from mm-node as a plain mirror, requests/s (p99) | ${small_plain_rps} (${small_plain_p99} ms) | ${small_nginx_rps} | $(r $small_plain_rps $small_nginx_rps) |"
  echo
  echo "Small-file rounds (requests/s): mm-node ${small_ours[*]}; nginx ${small_nginx[*]}; mm-node as a plain mirror ${small_plain[*]}. mm-node's cache after the hit runs: $ours_hits_status."
  echo
  echo "Cold misses ($rounds rounds, each with fresh cache directories): $clients clients at once ask for one uncached $(mib $cold_size) file (\`$cold_path\`) that the origin sends at $rate_mib MiB/s per connection (about $(python3 -c "print(f'{$cold_size/($rate_mib*1048576):.1f}')") s for the file); nginx answers X-Cache from \$upstream_cache_status:"
  echo
  echo "| test | mm-node | nginx proxy_cache | ratio (mm-node / nginx) |"
  echo "|---|---|---|---|"
  echo "| time to first body byte, median of $((clients * rounds)) clients | ${ttfb_ours_med} ms | ${ttfb_nginx_med} ms | $(r3 $ttfb_ours_med $ttfb_nginx_med) (goal ≤ 1.0) |"
  echo "| time to first body byte, max | ${ttfb_ours_max} ms | ${ttfb_nginx_max} ms | $(r3 $ttfb_ours_max $ttfb_nginx_max) (goal ≤ 1.0) |"
  echo "| time to first body byte, min | ${ttfb_ours_min} ms | ${ttfb_nginx_min} ms | |"
  echo "| time to the whole file, median / max | ${total_ours_med} / ${total_ours_max} ms | ${total_nginx_med} / ${total_nginx_max} ms | |"
  echo "| bytes from the origin for the file, in copies of it, per round | $(copies "${origin_ours[@]}") | $(copies "${origin_nginx[@]}") | (goal: exactly 1 copy) |"
  echo "| requests to the origin per round | ${reqs_ours[*]} | ${reqs_nginx[*]} | |"
  echo "| the origin's transfer, seconds per round | ${secs_ours[*]} | ${secs_nginx[*]} | |"
  echo "| clients without a whole 200 | $bad_ours | $bad_nginx | |"
  echo
  echo "Origin bytes per round: mm-node ${origin_ours[*]}; nginx ${origin_nginx[*]} (the file: $cold_size)."
  echo
  echo "Every cold client (server, round, time to first byte s, total s, status, bytes, X-Cache):"
  echo
  echo '```'
  cat "$work/cold.txt"
  echo '```'
} | tee "$out"
