#!/usr/bin/env bash
# deploy/docker without a container engine: Debian's docker-compose validates docker-compose.yml
# (`config` resolves and checks it without contacting an engine; DOCKER_HOST points nowhere to
# prove it), every host path it mounts exists, and the Dockerfile has what the deployment needs.
# Usage: compose_test.sh SOURCE_DIR
set -euo pipefail
src=$1
fail() { echo "FAIL: $*" >&2; exit 1; }
compose=$src/deploy/docker/docker-compose.yml
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export DOCKER_HOST=unix://$tmp/no-engine.sock MOED_MODELS_DIR=$tmp/models
mkdir "$MOED_MODELS_DIR"

docker-compose -f "$compose" config -q || fail "docker-compose config -q rejected $compose"
docker-compose -f "$compose" config > "$tmp/resolved.yml"
services=$(docker-compose -f "$compose" config --services | sort | tr '\n' ' ')
[ "$services" = "grafana moed prometheus " ] || fail "services: $services"
grep -q 'driver: nvidia' "$tmp/resolved.yml" || fail "no GPU reservation for moed"
grep -q 'capabilities:' "$tmp/resolved.yml" || fail "GPU reservation without capabilities"
# Bind mounts ("/abs/host/path:/container/path[:mode]") must name files that exist.
for host in $(sed -n 's/^ *- \(\/[^:]*\):\/.*/\1/p' "$tmp/resolved.yml"); do
  [ -e "$host" ] || fail "docker-compose.yml mounts a missing host path: $host"
done
grep -q "$src/deploy/prometheus:/etc/prometheus" "$tmp/resolved.yml" || fail "prometheus config not mounted"

dockerfile=$src/deploy/docker/Dockerfile
[ "$(grep -c '^FROM ' "$dockerfile")" -ge 2 ] || fail "Dockerfile is not multi-stage"
grep -q '^FROM nvidia/cuda:.*-devel-' "$dockerfile" || fail "build stage is not a CUDA devel image"
grep -q '^FROM nvidia/cuda:.*-runtime-' "$dockerfile" || fail "runtime stage is not a CUDA runtime image"
grep -Eq '^USER (moed|[1-9][0-9]*)$' "$dockerfile" || fail "runtime user is not a non-root user"
grep -A1 '^HEALTHCHECK' "$dockerfile" | grep -q '/health' || fail "no HEALTHCHECK on /health"
echo "PASS: docker-compose.yml and Dockerfile"
