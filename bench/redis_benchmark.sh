#!/usr/bin/env bash
# redis-benchmark (Debian redis-tools) against a 1-node dynamo-server (1,1,1),
# a 3-node (3,2,2) cluster and a redis-server, in the same run, on 127.0.0.1:
# SET and GET with 100-byte values over 10k random keys, without pipelining
# and with -P $PIPELINE. Every (target, test, pipelining) is measured REPEATS
# times, the targets interleaved so that noise from other work on the
# machine falls on all of them alike; the table shows the median of the
# runs (requests/s and p50/p99/p99.9 latency in ms, the percentiles from
# redis-benchmark's latency distribution) and the ratios of the medians to
# redis-server. Clients of the cluster all talk to node 1, which coordinates
# (a replica of every key with N=3 on 3 nodes). Not run by CI; installs
# redis-tools and redis-server when missing.
#
# CPU. With PIN=1 (the default on 2+ cores) every server — redis-server and
# each dynamo-server — runs on core 0 and redis-benchmark on core 1, so the
# client never takes CPU from the server it measures and every target gets
# the same one core (the 3-node cluster shares it among its 3 processes,
# as redis-server's single thread has one). Besides requests/s the table
# shows the server CPU time per request (user + system, from /proc, summed
# over the target's processes): on a machine shared with other work,
# requests/s follows whatever else runs, CPU per request much less.
# `node1` is the part of it spent by the first process of the target: for
# the cluster, node 1, which coordinates every request (the rest is the two
# replicas'); for one process, all of it.
#
#   bench/redis_benchmark.sh [REQUESTS] [CLIENTS] [REPEATS]   (20000, 20, 3)
#   env: DURABILITY=nosync|sync|buffered|buffered-all (nosync), PIPELINE (16),
#        STORAGE=lmdb|memory (lmdb; memory is dynamo-server --storage memory,
#        which, like the redis-server here, keeps nothing on disk),
#        BASELINE_STORAGE (STORAGE): the baseline's engine, so that
#        BASELINE=$BUILD_DIR/examples/dynamo-server STORAGE=memory
#        BASELINE_STORAGE=lmdb compares the two engines in one run,
#        PIN (1 on 2+ cores, else 0), BUILD_DIR (build),
#        OUT (raw and median CSV prefix, $BUILD_DIR/redis_benchmark),
#        BASELINE (another dynamo-server binary, e.g. the previous build
#        copied to /tmp: its 1-node and 3-node targets, "base-...", run
#        interleaved with the others, for old/new ratios from one run)
set -euo pipefail
cd "$(dirname "$0")/.."
requests=${1:-20000}
clients=${2:-20}
repeats=${3:-3}
pipeline=${PIPELINE:-16}
build=${BUILD_DIR:-build}
out=${OUT:-$build/redis_benchmark}
durability=${DURABILITY:-nosync}
storage=${STORAGE:-lmdb}
baseline_storage=${BASELINE_STORAGE:-$storage}
for s in "$storage" "$baseline_storage"; do
  if [ "$s" != lmdb ] && [ "$s" != memory ]; then echo "STORAGE must be lmdb or memory" >&2; exit 2; fi
done
pin=${PIN:-$([ "$(nproc)" -ge 2 ] && echo 1 || echo 0)}
on_server_core=(); on_client_core=()
if [ "$pin" = 1 ]; then on_server_core=(taskset -c 0); on_client_core=(taskset -c 1); fi
if ! command -v redis-benchmark >/dev/null || ! command -v redis-server >/dev/null; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-tools redis-server >/dev/null
fi
if [ ! -x "$build/examples/dynamo-server" ]; then
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build "$build" --target dynamo_server -j "$(nproc)" >/dev/null
fi
dir=$(mktemp -d /tmp/dynamo-bench-XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT
export DYNAMO_CLUSTER_SECRET=bench-secret
server="$build/examples/dynamo-server"
baseline=${BASELINE:-}
if [ -n "$baseline" ] && [ ! -x "$baseline" ]; then
  echo "BASELINE=$baseline is not an executable dynamo-server" >&2
  exit 2
fi

declare -A target_pids
targets=()
# Starts one server binary as a 1-node (1,1,1) target "NAME-1node-N1R1W1"
# and a 3-node (3,2,2) target "NAME-3nodes-N3R2W2" (client ports
# CLUSTER_CLIENT_BASE+1..3, peer ports CLUSTER_PEER_BASE+1..3).
start_dynamo() {  # name binary single_client single_peer cluster_client_base cluster_peer_base storage
  local name=$1 binary=$2 i peers cluster=""
  # The flags for engine $2 of a server whose data directory would be $1.
  engine() { if [ "$2" = memory ]; then echo --storage memory; else echo --data-dir "$1" --durability "$durability"; fi; }
  # shellcheck disable=SC2046  # engine's words are separate flags
  "${on_server_core[@]}" "$binary" --id 1 --peers "1=127.0.0.1:$4" --client "127.0.0.1:$3" \
    $(engine "$dir/$name-single" "$7") --n 1 --r 1 --w 1 \
    2>"$dir/$name-single.log" & pids+=($!)
  target_pids["$name-1node-N1R1W1"]="$!"
  peers="1=127.0.0.1:$(($6 + 1)),2=127.0.0.1:$(($6 + 2)),3=127.0.0.1:$(($6 + 3))"
  for i in 1 2 3; do
    # shellcheck disable=SC2046
    "${on_server_core[@]}" "$binary" --id $i --peers "$peers" --client "127.0.0.1:$(($5 + i))" \
      $(engine "$dir/$name-n$i" "$7") --n 3 --r 2 --w 2 \
      2>"$dir/$name-n$i.log" & pids+=($!)
    cluster="$cluster $!"
  done
  target_pids["$name-3nodes-N3R2W2"]="${cluster# }"
  targets+=("$name-1node-N1R1W1:$3" "$name-3nodes-N3R2W2:$(($5 + 1))")
}
"${on_server_core[@]}" redis-server --port 6399 --bind 127.0.0.1 --save "" --appendonly no --daemonize no \
  >"$dir/redis.log" 2>&1 & pids+=($!)
target_pids["redis-server"]="$!"
targets+=("redis-server:6399")
start_dynamo dynamo "$server" 6391 7201 6400 7210 "$storage"
# The baseline's targets interleave with the others, so that old and new
# binaries are compared under the same load.
[ -n "$baseline" ] && start_dynamo base "$baseline" 6392 7221 6410 7230 "$baseline_storage"
for t in "${targets[@]}"; do
  port=${t##*:}
  for _ in $(seq 100); do
    redis-cli -p "$port" PING >/dev/null 2>&1 && break
    sleep 0.1
  done
  # Every node of a cluster connected to both others (peer:N,connected=1).
  if [[ $t == *3nodes* ]]; then
    for p in $port $((port + 1)) $((port + 2)); do
      for _ in $(seq 100); do
        [ "$(redis-cli -p $p INFO peers | grep -c 'connected=1')" -ge 2 ] && break
        sleep 0.1
      done
    done
  fi
  # Warm-up (not measured): maps grown, connections and the failure
  # detectors' first replies in place.
  redis-benchmark -h 127.0.0.1 -p "$port" -n 2000 -c "$clients" -r 10000 -d 100 -t set,get -q \
    >/dev/null 2>&1 || true
done
# A node builds its anti-entropy trees once after it starts (one per
# replicated range, a batch every 10 ms: ~10 s for 1024 ranges), a transient
# a long-running server pays once; the runs start once every node reports
# them built (at most 120 s; a server too old to report them is not waited
# for, and started with the others, so it is as far along).
for t in "${targets[@]}"; do
  [[ $t == redis-server* ]] && continue
  port=${t##*:}
  nodes=1; [[ $t == *3nodes* ]] && nodes=3
  for p in $(seq "$port" $((port + nodes - 1))); do
    for _ in $(seq 1200); do
      info=$(redis-cli -p "$p" INFO metrics | tr -d '\r')
      trees=$(awk -F: '$1 == "merkle_trees" { print $2 }' <<<"$info")
      built=$(awk -F: '$1 == "merkle_trees_built" { print $2 }' <<<"$info")
      [ -z "$trees" ] || [ "$trees" = "$built" ] && break
      sleep 0.1
    done
  done
done

# CPU seconds (user + system) the given processes have used so far.
cpu_seconds() {
  local tck total=0 p
  tck=$(getconf CLK_TCK)
  for p in "$@"; do
    total=$((total + $(awk '{print $14 + $15}' "/proc/$p/stat")))
  done
  awk -v t="$total" -v k="$tck" 'BEGIN { printf "%.3f", t / k }'
}

# One redis-benchmark run -> "rps p50 p99 p99.9" (latencies in ms), or
# nothing when the run failed: redis-benchmark stops at the first error reply
# (e.g. a put refused with UNAVAILABLE while an overloaded coordinator
# suspected its peers). Failed runs are counted, not averaged in.
run() {  # port test pipeline requests
  "${on_client_core[@]}" redis-benchmark -h 127.0.0.1 -p "$1" -n "$4" -c "$clients" -P "$3" \
    -r 10000 -d 100 -t "$2" 2>"$dir/stderr" | tr '\r' '\n' | awk '
      /throughput summary:/ { rps = $3 }
      /^Latency by percentile distribution/ { in_dist = 1; next }
      /^Cumulative distribution/ { in_dist = 0 }
      in_dist && /% <= / {
        pct = $1; sub(/%/, "", pct); pct += 0; ms = $3
        if (p50 == "" && pct >= 50) p50 = ms
        if (p99 == "" && pct >= 99) p99 = ms
        if (p999 == "" && pct >= 99.9) p999 = ms
      }
      END { print rps, p50, p99, p999 }'
}

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
echo "target,test,pipeline,run,rps,p50_ms,p99_ms,p999_ms,cpu_us_per_req,node1_cpu_us_per_req" >"$out.raw.csv"
: >"$out.errors.txt"
for r in $(seq "$repeats"); do
  for p in 1 "$pipeline"; do
    n=$requests
    [ "$p" -gt 1 ] && n=$((requests * 5))
    for t in "${targets[@]}"; do
      name=${t%%:*}; port=${t##*:}
      for test in set get; do
        # shellcheck disable=SC2086  # the pid lists split on purpose
        cpu0=$(cpu_seconds ${target_pids[$name]})
        first=${target_pids[$name]%% *}
        first0=$(cpu_seconds "$first")
        read -r rps p50 p99 p999 < <(run "$port" "$test" "$p" "$n")
        # shellcheck disable=SC2086
        cpu1=$(cpu_seconds ${target_pids[$name]})
        first1=$(cpu_seconds "$first")
        cpu_us=$(awk -v a="$cpu0" -v b="$cpu1" -v n="$n" 'BEGIN { printf "%.2f", (b - a) * 1e6 / n }')
        first_us=$(awk -v a="$first0" -v b="$first1" -v n="$n" 'BEGIN { printf "%.2f", (b - a) * 1e6 / n }')
        [ -z "$rps" ] && cpu_us="" && first_us=""
        echo "$name,$test,$p,$r,$rps,$p50,$p99,$p999,$cpu_us,$first_us" >>"$out.raw.csv"
        if [ -z "$rps" ]; then
          echo "$name $test -P $p run $r: $(grep -m1 -i error "$dir/stderr" || echo 'no output')" >>"$out.errors.txt"
        fi
      done
    done
  done
done

# Medians per (target, test, pipeline), then ratios to redis-server.
awk -F, '
  NR == 1 { next }
  { k = $1 "," $2 "," $3; keys[k] = 1 }
  $5 == "" { failed[k]++; next }
  { n[k]++; for (c = 5; c <= 10; c++) v[k, c, n[k]] = $c }
  function median(key, col,    m, i, j, a, t) {
    m = n[key]; if (m == 0) return 0
    for (i = 1; i <= m; i++) a[i] = v[key, col, i] + 0
    for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
    return (m % 2) ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2
  }
  END {
    print "target,test,pipeline,runs_ok,runs_failed,rps_median,p50_ms,p99_ms,p999_ms,rps_ratio_to_redis,cpu_us_per_req,cpu_ratio_to_redis,node1_cpu_us_per_req"
    for (k in keys) { rps[k] = median(k, 5); cpu[k] = median(k, 9) }
    for (k in keys) {
      split(k, f, ",")
      base = rps["redis-server," f[2] "," f[3]]
      cpu_base = cpu["redis-server," f[2] "," f[3]]
      rank = (f[1] == "redis-server" ? 0 : (f[1] ~ /1node/ ? 1 : 3)) + (f[1] ~ /^base-/ ? 1 : 0)
      printf "%d,%s,%d,%d,%.0f,%.3f,%.3f,%.3f,%.3f,%.2f,%.1f,%.2f\n", rank, k, n[k], failed[k], rps[k],
             median(k, 6), median(k, 7), median(k, 8), (base > 0 ? rps[k] / base : 0),
             cpu[k], (cpu_base > 0 ? cpu[k] / cpu_base : 0), median(k, 10)
    }
  }' "$out.raw.csv" | { read -r header; echo "$header"; sort -t, -k4,4n -k3,3r -k1,1n | cut -d, -f2-; } >"$out.csv"

printf "%-24s %-4s %3s %10s %8s %8s %8s %8s %8s %8s %8s %7s\n" target test -P ops/s p50_ms p99_ms \
  p99.9_ms x_redis cpu_us/op cpu_x node1_us failed
tail -n +2 "$out.csv" | while IFS=, read -r name test p ok failed rps p50 p99 p999 ratio cpu cpu_x node1; do
  printf "%-24s %-4s %3s %10s %8s %8s %8s %8s %8s %8s %8s %7s\n" "$name" "$test" "$p" "$rps" "$p50" \
    "$p99" "$p999" "$ratio" "$cpu" "$cpu_x" "$node1" "$failed"
done
echo "(median of $repeats runs; storage=$storage (baseline: $baseline_storage); durability=$durability; $requests requests ($((requests * 5)) pipelined), $clients clients, 100-byte values, 10k keys; 127.0.0.1; pinned=$pin)"
echo "load average before: $load_before, after: $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) cores)"
echo "raw runs: $out.raw.csv, medians: $out.csv"
if [ -s "$out.errors.txt" ]; then echo "failed runs:"; cat "$out.errors.txt"; fi
