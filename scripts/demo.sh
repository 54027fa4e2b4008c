#!/usr/bin/env bash
# Builds and runs the demo: Dynamo at work in an in-process simulated cluster.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
build=${BUILD_DIR:-build}
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" --target dynamo_demo -j "$(nproc)" >/dev/null
"$build/examples/dynamo_demo" "$@"
