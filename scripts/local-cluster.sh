#!/usr/bin/env bash
# Starts a 3-node libdynamo cluster on 127.0.0.1 and keeps it in the
# foreground; Ctrl-C (or `scripts/local-cluster.sh --stop` from another
# shell) stops it cleanly with SIGTERM.
#
#   scripts/local-cluster.sh            # start; client ports 6381 6382 6383
#   scripts/local-cluster.sh --detach   # start in the background and return
#   scripts/local-cluster.sh --stop     # stop a detached cluster
#   scripts/local-cluster.sh --add ID   # one more node (ID >= 4, in the
#       background) that joins the running cluster through node 1: peer
#       port 710ID, client port 638ID (ID <= 9)
#
# Environment: BUILD_DIR (default build), CLUSTER_DIR (default
# /tmp/dynamo-local-cluster: data, logs, pids), DYNAMO_CLUSTER_SECRET
# (default: a random secret kept in CLUSTER_DIR/secret), N/R/W (3/2/2).
# The three first nodes start statically (every server gets the same
# --peers); added nodes join through the seed and learn the others'
# addresses by gossip.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build}
dir=${CLUSTER_DIR:-/tmp/dynamo-local-cluster}
mode=${1:-}

stop() {
  local pids=()
  for f in "$dir"/node*.pid; do
    [ -e "$f" ] || continue
    pid=$(cat "$f")
    if kill -0 "$pid" 2>/dev/null; then kill -TERM "$pid" && pids+=("$pid"); fi
    rm -f "$f"
  done
  for pid in "${pids[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" || true
  done
  echo "local cluster stopped (data kept in $dir)"
}

if [ "$mode" = "--stop" ]; then stop; exit 0; fi
if [ "$mode" = "--add" ]; then
  id=${2:-}
  if ! [[ "$id" =~ ^[4-9]$ ]]; then echo "usage: $0 --add ID (4..9)" >&2; exit 2; fi
  if [ -e "$dir/node$id.pid" ] && kill -0 "$(cat "$dir/node$id.pid")" 2>/dev/null; then
    echo "node $id already running" >&2; exit 1
  fi
  DYNAMO_CLUSTER_SECRET=${DYNAMO_CLUSTER_SECRET:-$(cat "$dir/secret")}
  export DYNAMO_CLUSTER_SECRET
  "$build/examples/dynamo-server" --id "$id" --listen "127.0.0.1:710$id" \
    --seeds 1=127.0.0.1:7101 --client "127.0.0.1:638$id" --data-dir "$dir/node$id" \
    --n "${N:-3}" --r "${R:-2}" --w "${W:-2}" 2>>"$dir/node$id.log" &
  echo $! > "$dir/node$id.pid"
  echo "node $id joining through node 1: $build/examples/dynamoctl --port 638$id status"
  exit 0
fi
if [ -n "$mode" ] && [ "$mode" != "--detach" ]; then
  echo "usage: $0 [--detach|--stop|--add ID]" >&2; exit 2
fi

if [ ! -x "$build/examples/dynamo-server" ]; then
  scripts/deps.sh
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build "$build" --target dynamo_server dynamoctl -j "$(nproc)" >/dev/null
fi
mkdir -p "$dir"
if [ -z "${DYNAMO_CLUSTER_SECRET:-}" ]; then
  [ -s "$dir/secret" ] || head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$dir/secret"
  DYNAMO_CLUSTER_SECRET=$(cat "$dir/secret")
fi
export DYNAMO_CLUSTER_SECRET
peers="1=127.0.0.1:7101,2=127.0.0.1:7102,3=127.0.0.1:7103"
for i in 1 2 3; do
  if [ -e "$dir/node$i.pid" ] && kill -0 "$(cat "$dir/node$i.pid")" 2>/dev/null; then
    echo "node $i already running (pid $(cat "$dir/node$i.pid")); use --stop first" >&2; exit 1
  fi
  "$build/examples/dynamo-server" --id "$i" --peers "$peers" --client "127.0.0.1:638$i" \
    --data-dir "$dir/node$i" --n "${N:-3}" --r "${R:-2}" --w "${W:-2}" \
    2>>"$dir/node$i.log" &
  echo $! > "$dir/node$i.pid"
done
sleep 0.5
for i in 1 2 3; do
  kill -0 "$(cat "$dir/node$i.pid")" 2>/dev/null || { echo "node $i failed:"; tail -3 "$dir/node$i.log"; stop; exit 1; }
done
echo "3-node cluster up: redis-cli -p 6381 | 6382 | 6383;  $build/examples/dynamoctl --port 6381 status"
echo "logs and data: $dir"
if [ "$mode" = "--detach" ]; then exit 0; fi
trap 'stop; exit 0' INT TERM
echo "Ctrl-C stops the cluster"
wait
