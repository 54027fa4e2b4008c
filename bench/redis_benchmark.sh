#!/usr/bin/env bash
# redis-benchmark against a 1-node dynamo-server (1,1,1), a 3-node (3,2,2)
# cluster and a redis-server, in the same run, on 127.0.0.1; prints requests/s
# for SET and GET and the ratios to redis-server. Not run by CI. Installs
# redis-tools and redis-server (Debian) when missing.
#
#   bench/redis_benchmark.sh [REQUESTS] [CLIENTS]      (defaults 20000, 20)
set -euo pipefail
cd "$(dirname "$0")/.."
requests=${1:-20000}
clients=${2:-20}
build=${BUILD_DIR:-build}
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
durability=${DURABILITY:-nosync}

# One node, (1,1,1).
"$server" --id 1 --peers 1=127.0.0.1:7201 --client 127.0.0.1:6391 --data-dir "$dir/single" \
  --n 1 --r 1 --w 1 --durability "$durability" 2>"$dir/single.log" & pids+=($!)
# Three nodes, (3,2,2).
peers="1=127.0.0.1:7211,2=127.0.0.1:7212,3=127.0.0.1:7213"
for i in 1 2 3; do
  "$server" --id $i --peers "$peers" --client 127.0.0.1:640$i --data-dir "$dir/n$i" \
    --n 3 --r 2 --w 2 --durability "$durability" 2>"$dir/n$i.log" & pids+=($!)
done
redis-server --port 6399 --bind 127.0.0.1 --save "" --appendonly no --daemonize no \
  >"$dir/redis.log" 2>&1 & pids+=($!)
sleep 1

run() {  # port -> "set_rps get_rps"
  redis-benchmark -h 127.0.0.1 -p "$1" -n "$requests" -c "$clients" -r 10000 -d 100 -t set,get --csv -q 2>/dev/null |
    awk -F'"' '/^"SET"/{s=$4} /^"GET"/{g=$4} END{print s, g}'
}
read -r rs rg < <(run 6399)
read -r ss sg < <(run 6391)
read -r cs cg < <(run 6401)
printf "%-28s %12s %12s %10s %10s\n" target SET/s GET/s SET/redis GET/redis
printf "%-28s %12s %12s %10s %10s\n" "redis-server" "$rs" "$rg" 1.00 1.00
for row in "dynamo 1 node (1,1,1):$ss:$sg" "dynamo 3 nodes (3,2,2):$cs:$cg"; do
  IFS=: read -r name s g <<<"$row"
  printf "%-28s %12s %12s %10.2f %10.2f\n" "$name" "$s" "$g" "$(echo "$s / $rs" | bc -l)" "$(echo "$g / $rg" | bc -l)"
done
echo "(durability=$durability, $requests requests, $clients clients, 100-byte values, 10k keys; 127.0.0.1)"
