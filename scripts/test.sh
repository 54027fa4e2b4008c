#!/usr/bin/env bash
# Builds libdynamo with its tests, benchmarks and examples, and runs every test.
# Extra arguments go to CMake, e.g. scripts/test.sh -DDYNAMO_SANITIZE=ON.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
build=${BUILD_DIR:-build}
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@"
cmake --build "$build" -j "$(nproc)"
cd "$build"
ctest --output-on-failure -j "$(nproc)"
