#!/usr/bin/env bash
# `cmake --install`: with --prefix P, the binaries, the unit, the default config and the examples
# land under P, the unit points at P, and the installed moed serves (it finds the installed
# moed-worker beside it). With DESTDIR and prefix /usr (a package build), everything lands under
# DESTDIR, the config in DESTDIR/etc/moed, and the unit is the one in deploy/systemd unchanged.
# Usage: install_test.sh SOURCE_DIR BUILD_DIR
set -euo pipefail
src=$1 build=$2
fail() { echo "FAIL: $*" >&2; exit 1; }
tmp=$(mktemp -d)
moed_pid=""
trap '[ -n "$moed_pid" ] && kill -9 -- -"$moed_pid" 2>/dev/null; rm -rf "$tmp"' EXIT

# 1. --prefix
p=$tmp/prefix
cmake --install "$build" --prefix "$p" > "$tmp/install.log" || fail "cmake --install --prefix: $(cat "$tmp/install.log")"
for b in moed moed-worker moectl moed-model; do [ -x "$p/bin/$b" ] || fail "missing $p/bin/$b"; done
cmp "$src/configs/moed.yaml" "$p/etc/moed/moed.yaml" || fail "etc/moed/moed.yaml differs from configs/moed.yaml"
for f in "$src"/configs/examples/*.yaml; do
  cmp "$f" "$p/share/moed/examples/$(basename "$f")" || fail "example $(basename "$f") not installed"
done
unit=$p/lib/systemd/system/moed.service
[ -f "$unit" ] || fail "missing $unit"
grep -qx "ExecStart=$p/bin/moed --config $p/etc/moed/moed.yaml" "$unit" || fail "unit ExecStart: $(grep ExecStart= "$unit")"
out=$(cd "$tmp" && systemd-analyze verify "$unit" 2>&1) || fail "systemd-analyze verify (installed unit): $out"
[ -z "$out" ] || fail "systemd-analyze verify warned on the installed unit: $out"

# The installed moed serves a tiny model with its installed worker: moed-worker is found beside moed.
"$p/bin/moed-model" synth "$tmp/demo.gguf" --preset tiny --experts Q4_K --rest Q8_0 \
  --vocab "$src/tests/data/text/vocab/ggml-vocab-qwen35.gguf" > /dev/null
cat > "$tmp/moed.yaml" <<YAML
server: {listen: "127.0.0.1:0"}
admin: {socket: $tmp/admin.sock}
model: {path: $tmp/demo.gguf, name: demo}
devices: {backends: [cpu]}
workers: {cpu_stages: 1, threads: 1}
cache: {kv_blocks: 64}
YAML
setsid "$p/bin/moed" --config "$tmp/moed.yaml" > "$tmp/moed.log" 2>&1 &
moed_pid=$!
for _ in $(seq 600); do
  grep -q "serving 'demo'" "$tmp/moed.log" && break
  kill -0 "$moed_pid" 2>/dev/null || fail "installed moed exited: $(cat "$tmp/moed.log")"
  sleep 0.1
done
grep -q "serving 'demo'" "$tmp/moed.log" || fail "installed moed did not serve in 60 s: $(cat "$tmp/moed.log")"
grep -q "moed-worker [0-9]* listening" "$tmp/moed.log" || fail "no worker started: $(cat "$tmp/moed.log")"
kill -TERM "$moed_pid"
wait "$moed_pid" || fail "installed moed exited with $? after SIGTERM"
moed_pid=""

# 2. DESTDIR with prefix /usr
d=$tmp/destdir
DESTDIR=$d cmake --install "$build" --prefix /usr > "$tmp/install.log" || fail "DESTDIR install: $(cat "$tmp/install.log")"
for f in usr/bin/moed usr/bin/moed-worker usr/bin/moectl usr/bin/moed-model etc/moed/moed.yaml \
         usr/lib/systemd/system/moed.service usr/share/moed/examples/cpu-demo.yaml; do
  [ -e "$d/$f" ] || fail "DESTDIR install: missing /$f"
done
cmp "$src/deploy/systemd/moed.service" "$d/usr/lib/systemd/system/moed.service" || fail "prefix /usr changed the unit"
# The manifest lists the final paths (without DESTDIR); each must exist under DESTDIR.
grep -qx /etc/moed/moed.yaml "$build/install_manifest.txt" || fail "manifest lacks /etc/moed/moed.yaml"
while read -r f; do
  [ -e "$d$f" ] || fail "in install_manifest.txt but not under DESTDIR: $f"
done < "$build/install_manifest.txt"
echo "PASS: cmake --install (prefix and DESTDIR)"
