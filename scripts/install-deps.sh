#!/usr/bin/env bash
# Installs every Debian 12 package moed builds, tests or demos with. Idempotent; run as root.
# The CUDA toolkit is not installed here: it is used from /usr/local/cuda when present.
set -euo pipefail
packages=(
  cmake ninja-build g++ clang libclang-rt-14-dev llvm-14   # build, libFuzzer, sanitizers
  libabsl-dev libgtest-dev libgmock-dev libbenchmark-dev   # base libraries, tests, benchmarks
  nlohmann-json3-dev libpcre2-dev                          # safetensors headers, tokenizer
  python3 python3-jinja2                                   # template oracle for the text tests
  libyaml-cpp-dev libze-dev                                # daemon config, Level Zero discovery
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler  # proto/, admin, workers
  libboost-dev libsystemd-dev                              # HTTP gateway (Beast), sd_notify
  prometheus                                               # promtool checks the metrics exposition
  docker-compose                                           # validates deploy/docker (no engine needed)
  systemd                                                  # systemd-analyze verifies deploy/systemd (not PID 1)
)
# The e2e tests drive the gateway with the openai npm client. A machine may already carry a Node.js
# that bundles npm (NodeSource); Debian's npm conflicts with it, so add Node only when npm is absent.
command -v npm >/dev/null 2>&1 || packages+=(nodejs npm)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
