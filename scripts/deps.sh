#!/usr/bin/env bash
# Installs the Debian packages libdynamo builds with, when any is missing.
set -euo pipefail
packages=(build-essential cmake ninja-build libabsl-dev libxxhash-dev liblmdb-dev
          catch2 libbenchmark-dev libasio-dev libssl-dev libjemalloc-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi
