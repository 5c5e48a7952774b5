#!/usr/bin/env bash
# Runs every test of moed on a fresh Debian 12 machine: installs the packages it needs, builds
# with GCC, runs the ctest suite, then builds the libFuzzer targets with clang (ASan + UBSan) and
# runs each for MOED_FUZZ_SECONDS (default 60).
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)

bash scripts/install-deps.sh

cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build build -j"$jobs"
# The end-to-end tests drive the gateway with the official openai npm client (gateway_e2e_test).
(cd tests/e2e && npm ci --no-audit --no-fund)
(cd build && ctest --output-on-failure -j"$jobs")

CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DMOED_FUZZ=ON \
  -DMOED_FUZZ_SECONDS="${MOED_FUZZ_SECONDS:-60}"
cmake --build build-fuzz -j"$jobs" --target fuzzers
(cd build-fuzz && ctest -L fuzz --output-on-failure)
